"""nasc.search: architecture search on a device's measured latency.

- settings: [search] (shared), one table per strategy ([search.proxyless], ...), [search.space], [data]
- space: SearchSpace (layers, candidate_blocks), ArchSpec (codec, compact strings), build, build_block
- ops: the blocks (stem, MBConv, zero, head) and the superkernel candidates
- data: digits / image folder / .npz, seeded splits
- runtime: run_search (data, seeding, checkpoint/resume, final training, outputs) for any strategy
- strategies/: the registry; proxyless (supernet with binarized paths), nao, random, path_level (grows a
  trained network by function-preserving moves: the result is a PathArch)
- path_level/: multi-branch cells (PathArch), their modules and transformations, moves, the meta-controller
- objective: latency costs from a LatencyPredictor, expected latency, losses, RL reward
- outputs: SearchResult, SearchRecord (search.json), arch.json / model.pt, load_trained
search/ never imports tvm or nasc.devices: latency arrives through a nasc.latency.LatencyPredictor.
"""
