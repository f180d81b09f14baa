//! railyard-ipam-plugin (being built).
