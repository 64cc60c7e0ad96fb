"""From a running server to numbers: one request's sample, the workloads, statistics, a point's
measurement, the adaptive sampler and the lossless probe."""
