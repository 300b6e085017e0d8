//! YRD Node: the peer-to-peer node through which the data bureaus of the Yangtze River Delta
//! share government data with each other, with no central server.
//!
//! Layers, imports pointing down only: [`cli`] and [`api`] → [`node`] (the service layer, the only
//! place that decides) → [`net`] (the libp2p swarm in one task) → [`store`] (sled) → [`model`]
//! (documents and their signatures). See `docs/architecture.md`.

pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod devnet;
pub mod export;
pub mod identity;
pub mod logging;
pub mod model;
pub mod net;
pub mod node;
pub mod notify;
pub mod samples;
pub mod setup;
pub mod sim;
pub mod store;
