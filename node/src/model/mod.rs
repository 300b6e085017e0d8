//! Pure data: the documents, messages and tables of the protocol, their canonical form and
//! signatures. No I/O lives here.

pub mod borrowed_json;
pub mod canonical;
pub mod catalogue;
pub mod charter;
pub mod chunks;
pub mod exchange;
pub mod masking;
pub mod membership;
pub mod merkle;
pub mod message;
pub mod node_info;
pub mod protocol_schemas;
pub mod provenance;
pub mod query;
pub mod refusal;
pub mod region;
pub mod signed;
pub mod standard;
pub mod transfer;
