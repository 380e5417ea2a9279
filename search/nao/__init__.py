"""nasc.search.nao: Neural Architecture Optimization (Luo et al., 2018): the encoder-predictor-decoder, its search."""
