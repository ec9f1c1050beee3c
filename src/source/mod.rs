//! Sources of session records. There is one: the senhasegura A2A API.

pub mod senhasegura;
