"""Path-level network transformations (Cai et al., ICML 2018): multi-branch cells and function-preserving rewrites."""
