"""nasc.pipeline: flows that cross rooms (latency-table build, fidelity, measure, compile on a device,
export, package, search on a device's latencies); composes build.toml into each room's own settings."""
