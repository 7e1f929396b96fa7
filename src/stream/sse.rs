//! Incremental Server-Sent Events parser (the WHATWG event-stream grammar): bytes may arrive split
//! anywhere, lines end in LF, CRLF or CR, and an event is dispatched at a blank line.

/// Events larger than this are refused rather than buffered without bound.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

#[derive(Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Vec<u8>,
    event: Vec<u8>,
    has_data: bool,
    /// A CR ended the last line; a following LF belongs to it.
    after_cr: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; calls `on_event(event_name, data)` for every complete event.
    pub fn feed<E>(
        &mut self,
        input: &[u8],
        mut on_event: impl FnMut(&[u8], &[u8]) -> Result<(), E>,
        too_big: impl Fn() -> E,
    ) -> Result<(), E> {
        let mut rest = input;
        while !rest.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if rest[0] == b'\n' {
                    rest = &rest[1..];
                    continue;
                }
            }
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => {
                    if rest[i] == b'\r' {
                        self.after_cr = true;
                    }
                    if self.line.is_empty() {
                        self.process_line_slice(&rest[..i], &mut on_event)?;
                    } else {
                        self.line.extend_from_slice(&rest[..i]);
                        let line = std::mem::take(&mut self.line);
                        self.process_line_slice(&line, &mut on_event)?;
                        self.line = line;
                        self.line.clear();
                    }
                    rest = &rest[i + 1..];
                }
                None => {
                    self.line.extend_from_slice(rest);
                    rest = &[];
                }
            }
            if self.line.len() + self.data.len() > MAX_EVENT_BYTES {
                return Err(too_big());
            }
        }
        Ok(())
    }

    /// At end of input: an event whose lines are complete but which lacks the final blank line
    /// is still dispatched (providers sometimes close right after the last `data:` line); an
    /// unterminated line is a cut-off and is dropped.
    pub fn finish<E>(
        &mut self,
        mut on_event: impl FnMut(&[u8], &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.line.clear();
        self.dispatch(&mut on_event)
    }

    fn process_line_slice<E>(
        &mut self,
        line: &[u8],
        on_event: &mut impl FnMut(&[u8], &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if line.is_empty() {
            return self.dispatch(on_event);
        }
        if line[0] == b':' {
            return Ok(()); // comment / keep-alive
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            _ => {} // id, retry and unknown fields carry nothing we use
        }
        Ok(())
    }

    fn dispatch<E>(
        &mut self,
        on_event: &mut impl FnMut(&[u8], &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let r = if self.has_data {
            on_event(&self.event, &self.data)
        } else {
            Ok(())
        };
        self.data.clear();
        self.event.clear();
        self.has_data = false;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(
                c,
                |e, d| {
                    out.push((
                        String::from_utf8_lossy(e).into(),
                        String::from_utf8_lossy(d).into(),
                    ));
                    Ok::<(), ()>(())
                },
                || (),
            )
            .unwrap();
        }
        p.finish(|e, d| {
            out.push((
                String::from_utf8_lossy(e).into(),
                String::from_utf8_lossy(d).into(),
            ));
            Ok::<(), ()>(())
        })
        .unwrap();
        out
    }

    #[test]
    fn every_split_gives_the_same_events() {
        let stream: &[u8] = b"event: message_start\r\ndata: {\"a\":1}\r\n\r\n: ping\n\ndata: line1\ndata: line2\n\ndata:[DONE]\r\r";
        let whole = collect(&[stream]);
        assert_eq!(
            whole,
            vec![
                ("message_start".into(), "{\"a\":1}".into()),
                ("".into(), "line1\nline2".into()),
                ("".into(), "[DONE]".into()),
            ]
        );
        for i in 0..stream.len() {
            for j in i..stream.len() {
                let parts = [&stream[..i], &stream[i..j], &stream[j..]];
                assert_eq!(collect(&parts), whole, "split at {i},{j}");
            }
        }
    }

    #[test]
    fn oversize_event_is_refused() {
        let mut p = SseParser::new();
        let big = vec![b'a'; MAX_EVENT_BYTES + 10];
        let mut line = b"data: ".to_vec();
        line.extend_from_slice(&big);
        let r = p.feed(&line, |_, _| Ok(()), || "too big");
        assert_eq!(r, Err("too big"));
    }
}
