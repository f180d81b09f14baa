//! railyard-route-daemon (being built).
