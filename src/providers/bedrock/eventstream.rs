//! ConverseStream: AWS event-stream binary frames → canonical stream events.
//!
//! Each frame carries `:message-type` (`event`, `exception` or `error`) and, for events,
//! `:event-type` with a JSON payload (the `ConverseStreamOutput` members of the service model).
//! The stream runs `messageStart`, then per content block `contentBlockStart` (tool-use blocks
//! only) / `contentBlockDelta`* / `contentBlockStop`, then `messageStop` (the stop reason) and
//! last `metadata` (usage). `Done` is emitted once both `messageStop` and `metadata` arrived; a
//! body that ends after `messageStop` without `metadata` is still complete (no usage).
//! Exceptions (`throttlingException`, `serviceUnavailableException`,
//! `modelStreamErrorException`, `internalServerException`, `validationException`) are in-band
//! errors, so before the first content they fall over.

use std::collections::{HashMap, HashSet};

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::{HeaderValue, Message};
use bytes::BytesMut;
use serde::Deserialize;

use super::converse::{WireUsage, finish_reason};
use crate::llm::StreamEvent;
use crate::providers::tool_ids;
use crate::stream::StreamFault;

/// The event-stream format caps a message at 16 MiB (aws-c-event-stream's
/// `AWS_EVENT_STREAM_MAX_MESSAGE_SIZE`); a longer length prefix is corruption, and waiting for
/// it would buffer without bound.
pub const MAX_FRAME_BYTES: u32 = 16 * 1024 * 1024;
/// Prelude (total length, headers length, prelude CRC) plus the message CRC.
const MIN_FRAME_BYTES: u32 = 16;
const PRELUDE_BYTES: usize = 12;

pub struct Decoder {
    frames: MessageFrameDecoder,
    buf: BytesMut,
    /// True once the current frame's prelude was checked (and handed to `frames`).
    in_frame: bool,
    model: String,
    /// Content-block index → 0-based tool-call index, for tool-use blocks.
    tool_blocks: HashMap<u32, u32>,
    /// Blocks of server-side tools, whose deltas are not the client's to see.
    skipped_blocks: HashSet<u32>,
    next_tool: u32,
    stopped: bool,
    metadata: bool,
    done: bool,
}

impl Decoder {
    pub fn new(model: &str) -> Self {
        Decoder {
            frames: MessageFrameDecoder::new(),
            buf: BytesMut::new(),
            in_frame: false,
            model: model.to_string(),
            tool_blocks: HashMap::new(),
            skipped_blocks: HashSet::new(),
            next_tool: 0,
            stopped: false,
            metadata: false,
            done: false,
        }
    }

    fn on_message(&mut self, msg: &Message, out: &mut Vec<StreamEvent>) -> Result<(), StreamFault> {
        if self.done {
            return Ok(()); // nothing after the end belongs to the response
        }
        let message_type = header(msg, ":message-type");
        match message_type {
            Some("event") => {}
            Some("exception") => {
                let kind = header(msg, ":exception-type").unwrap_or("exception");
                return Err(StreamFault::InBand(format!(
                    "{kind}: {}",
                    exception_message(msg.payload())
                )));
            }
            Some("error") => {
                let code = header(msg, ":error-code").unwrap_or("error");
                let text = header(msg, ":error-message").unwrap_or("");
                return Err(StreamFault::InBand(format!("{code}: {text}")));
            }
            Some(other) => {
                return Err(StreamFault::Malformed(format!(
                    "unknown event-stream message type `{other}`"
                )));
            }
            None => {
                return Err(StreamFault::Malformed(
                    "event-stream frame without `:message-type`".into(),
                ));
            }
        }
        let payload = msg.payload().as_ref();
        match header(msg, ":event-type") {
            Some("messageStart") => out.push(StreamEvent::Start {
                id: String::new(),
                model: self.model.clone(),
            }),
            Some("contentBlockStart") => {
                let ev: BlockStart = json(payload, "contentBlockStart")?;
                if let Some(tu) = ev.start.and_then(|s| s.tool_use) {
                    if tu.kind.as_deref() == Some("server_tool_use") {
                        self.skipped_blocks.insert(ev.index);
                    } else {
                        let index = self.next_tool;
                        self.next_tool = self.next_tool.saturating_add(1);
                        self.tool_blocks.insert(ev.index, index);
                        out.push(StreamEvent::ToolCallStart {
                            index,
                            id: tool_ids::from_bedrock(&tu.id),
                            name: tu.name,
                        });
                    }
                }
            }
            Some("contentBlockDelta") => {
                let ev: BlockDelta = json(payload, "contentBlockDelta")?;
                let Some(delta) = ev.delta else {
                    return Ok(());
                };
                if ev.index.is_some_and(|i| self.skipped_blocks.contains(&i)) {
                    return Ok(());
                }
                if let Some(t) = delta.text {
                    out.push(StreamEvent::Text(t));
                }
                if let Some(r) = delta.reasoning.and_then(|r| r.text) {
                    out.push(StreamEvent::Reasoning(r));
                }
                if let Some(tu) = delta.tool_use {
                    let index = ev
                        .index
                        .and_then(|b| self.tool_blocks.get(&b).copied())
                        .ok_or_else(|| {
                            StreamFault::Malformed(
                                "tool input for a content block that never started".into(),
                            )
                        })?;
                    out.push(StreamEvent::ToolCallArgs {
                        index,
                        fragment: tu.input,
                    });
                }
            }
            Some("contentBlockStop") => {}
            Some("messageStop") => {
                let ev: MessageStop = json(payload, "messageStop")?;
                let reason = finish_reason(&ev.stop_reason).map_err(StreamFault::Malformed)?;
                out.push(StreamEvent::Finish(reason));
                self.stopped = true;
                if self.metadata {
                    self.end(out);
                }
            }
            Some("metadata") => {
                let ev: Metadata = json(payload, "metadata")?;
                if let Some(u) = ev.usage {
                    out.push(StreamEvent::Usage(u.canonical()));
                }
                self.metadata = true;
                if self.stopped {
                    self.end(out);
                }
            }
            // An event type added after this was written carries nothing we could map.
            Some(_) => {}
            None => {
                return Err(StreamFault::Malformed(
                    "event frame without `:event-type`".into(),
                ));
            }
        }
        Ok(())
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) {
        if !self.done {
            self.done = true;
            out.push(StreamEvent::Done);
        }
    }
}

impl crate::stream::StreamDecoder for Decoder {
    fn feed(&mut self, input: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), StreamFault> {
        self.buf.extend_from_slice(input);
        loop {
            if !self.in_frame {
                // `MessageFrameDecoder` consumes the prelude as soon as 12 bytes are there and
                // then waits for the whole frame, whatever length it claims: check it first.
                let Some(prefix) = self.buf.get(..PRELUDE_BYTES) else {
                    return Ok(());
                };
                let mut len = [0u8; 4];
                len.copy_from_slice(&prefix[..4]);
                let total = u32::from_be_bytes(len);
                if !(MIN_FRAME_BYTES..=MAX_FRAME_BYTES).contains(&total) {
                    return Err(StreamFault::Malformed(format!(
                        "event-stream frame length {total} is out of range"
                    )));
                }
                self.in_frame = true;
            }
            match self.frames.decode_frame(&mut self.buf) {
                Ok(DecodedFrame::Incomplete) => return Ok(()),
                Ok(DecodedFrame::Complete(msg)) => {
                    self.in_frame = false;
                    self.on_message(&msg, out)?;
                }
                Err(e) => {
                    return Err(StreamFault::Malformed(format!("event-stream frame: {e}")));
                }
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), StreamFault> {
        if self.done {
            return Ok(());
        }
        if self.in_frame || !self.buf.is_empty() {
            return Err(StreamFault::Truncated);
        }
        if self.stopped {
            // `messageStop` ends the answer; only the usage report is missing.
            self.end(out);
            return Ok(());
        }
        Err(StreamFault::Truncated)
    }
}

fn header<'a>(msg: &'a Message, name: &str) -> Option<&'a str> {
    msg.headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
}

fn json<'a, T: Deserialize<'a>>(payload: &'a [u8], what: &str) -> Result<T, StreamFault> {
    serde_json::from_slice(payload)
        .map_err(|e| StreamFault::Malformed(format!("`{what}` payload: {e}")))
}

fn exception_message(payload: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        message: Option<String>,
        #[serde(rename = "Message", default)]
        message_upper: Option<String>,
    }
    serde_json::from_slice::<Body>(payload)
        .ok()
        .and_then(|b| b.message.or(b.message_upper))
        .unwrap_or_else(|| "provider error".to_string())
}

#[derive(Deserialize)]
struct BlockStart {
    #[serde(rename = "contentBlockIndex")]
    index: u32,
    #[serde(default)]
    start: Option<Start>,
}

#[derive(Deserialize)]
struct Start {
    #[serde(rename = "toolUse", default)]
    tool_use: Option<ToolStart>,
}

#[derive(Deserialize)]
struct ToolStart {
    #[serde(rename = "toolUseId")]
    id: String,
    name: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct BlockDelta {
    #[serde(rename = "contentBlockIndex", default)]
    index: Option<u32>,
    #[serde(default)]
    delta: Option<Delta>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    text: Option<String>,
    #[serde(rename = "toolUse", default)]
    tool_use: Option<ToolDelta>,
    #[serde(rename = "reasoningContent", default)]
    reasoning: Option<ReasoningDelta>,
}

#[derive(Deserialize)]
struct ToolDelta {
    input: String,
}

/// `text`, or a `signature` / `redactedContent` the client has no use for.
#[derive(Deserialize)]
struct ReasoningDelta {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct MessageStop {
    #[serde(rename = "stopReason")]
    stop_reason: String,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    usage: Option<WireUsage>,
}
