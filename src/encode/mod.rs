//! Encoders: turn a [`SessionEvent`] into the bytes of one output format. This is the only
//! place that knows ECS and CEF. Encoders never see API records or sinks.

pub mod cef;
pub mod ecs;
mod json;

use crate::event::SessionEvent;
use serde::Deserialize;

/// Output format of a sink.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Elastic Common Schema JSON, one document per event.
    Ecs,
    /// ArcSight Common Event Format, one line per event.
    Cef,
}

/// What the encoders are told besides the event: their options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// ECS: put the raw record in `event.original`.
    pub include_original: bool,
    /// CEF: header fields and severities.
    pub cef: cef::CefOptions,
}

/// Counters an encoder keeps (e.g. truncations), reported in the cycle summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EncodeCounters {
    /// Values truncated to a format limit.
    pub truncated: u64,
    /// Events emitted although some field could not be mapped (counted once per event by the
    /// filter, whatever the number of formats).
    pub partial: u64,
}

/// One encoder per configured format.
#[derive(Debug, Clone)]
pub enum Encoder {
    /// ECS JSON.
    Ecs(ecs::EcsEncoder),
    /// CEF.
    Cef(cef::CefEncoder),
}

impl Encoder {
    /// The encoder for `format` with these options.
    pub fn new(format: Format, options: &Options) -> Encoder {
        match format {
            Format::Ecs => Encoder::Ecs(ecs::EcsEncoder::new(options.include_original)),
            Format::Cef => Encoder::Cef(cef::CefEncoder::new(options.cef.clone())),
        }
    }

    /// Append the encoding of `event` to `out` (no trailing newline).
    pub fn encode(&self, event: &SessionEvent, out: &mut Vec<u8>, counters: &mut EncodeCounters) {
        match self {
            Encoder::Ecs(e) => e.encode(event, out, counters),
            Encoder::Cef(e) => e.encode(event, out, counters),
        }
    }
}
