//! Shared fixtures for the benchmarks (synthetic networks and inventories).
