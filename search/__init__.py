"""nasc.search: ProxylessNAS on a device's measured latency.

- settings: [search], [search.space], [data] of build.toml
- space: SearchSpace (layers, candidate_blocks), ArchSpec (codec, compact strings), build, build_block
- ops: the blocks (stem, MBConv, zero, head) and the superkernel candidates
- data: digits / image folder / .npz, seeded splits
- supernet: MixedOp with binarized paths (single, two, all)
- objective: latency costs from a LatencyPredictor, expected latency, losses, RL reward
- proxyless: run_search (warm-up, alternating weight/arch steps, derive, train, checkpoints)
- outputs: SearchResult, arch.json / model.pt / search.json / checkpoint.pt, load_trained
search/ never imports tvm or nasc.devices: latency arrives through a LatencyPredictor.
"""
