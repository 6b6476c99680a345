//! vmrmd: the helper daemon that removes tenants' VM working directories
//! race-safely, holding CAP_DAC_OVERRIDE and nothing else.
//!
//! `unsafe` lives only in [`sys`].
#![deny(unsafe_code)]

pub mod accounting;
pub mod admission;
pub mod audit;
pub mod cli;
pub mod connection;
pub mod daemon;
pub mod engine;
pub mod fair_queue;
pub mod ids;
pub mod listener;
pub mod logging;
pub mod notify;
pub mod privileges;
pub mod removal;
pub mod sandbox;
pub mod server;
pub mod service;
pub mod stats;
pub mod sweeper;
pub mod sys;
pub mod trusted;
