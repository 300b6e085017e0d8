//! YRD Node: the peer-to-peer node through which the data bureaus of the Yangtze River Delta
//! share government data with each other, with no central server.
//!
//! Layers, imports pointing down only: [`cli`] → [`server`] (the daemon: a node and its admin API,
//! one start and one shutdown) → [`api`] → [`node`] (the service layer, the only place that
//! decides) → [`net`] (the libp2p swarm in one task) and [`store`] (sled) → [`model`] (documents and
//! their signatures). See `docs/architecture.md`.

pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod devnet;
pub mod export;
pub mod failpoint;
pub mod identity;
pub mod logging;
pub mod model;
pub mod net;
pub mod node;
pub mod notify;
pub mod samples;
pub mod server;
pub mod setup;
pub mod sim;
pub mod store;
