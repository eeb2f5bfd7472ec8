//! The uwsgi packet header and the vars block wire format (F1–F3, F7).
//!
//! Sans-I/O: functions look at a byte buffer and either say how many bytes the packet head needs
//! in total, or hand back the decoded pieces. Nothing here reads a socket.

use crate::core::errors::ProtocolError;

/// Size of the fixed packet header.
pub const HEADER_SIZE: usize = 4;

/// The decoded 4-byte header (F1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub modifier1: u8,
    pub vars_size: u16,
    pub modifier2: u8,
}

impl Header {
    /// Header plus vars block: where the body starts in the stream.
    pub fn head_size(&self) -> usize {
        HEADER_SIZE + usize::from(self.vars_size)
    }
}

/// What the first bytes of a connection say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Fewer than [`HEADER_SIZE`] bytes so far and nothing foreign seen yet.
    NeedMore,
    /// A uwsgi header.
    Header(Header),
}

fn is_upper(b: u8) -> bool {
    b.is_ascii_uppercase()
}

/// Recognises an HTTP request line or a TLS record where a uwsgi header should be (F7).
///
/// An HTTP method is upper-case letters then a space: `GET `, `POST /`, `DELETE /`. Those bytes
/// would otherwise read as modifier1 65–90 and a vars size in the tens of thousands, making the
/// worker wait for bytes that never come. A TLS handshake record starts `16 03`.
fn foreign_protocol(buf: &[u8]) -> Option<&'static str> {
    match buf {
        [0x16, 0x03, ..] => Some("TLS"),
        [first, rest @ ..] if is_upper(*first) => {
            let window = rest.iter().take(HEADER_SIZE - 1);
            let mut saw_space = false;
            for &b in window {
                if saw_space {
                    break;
                }
                if b == b' ' {
                    saw_space = true;
                } else if !is_upper(b) {
                    return None;
                }
            }
            if saw_space || rest.len() >= HEADER_SIZE - 1 {
                Some("HTTP")
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Decodes the header from the start of `buf` (F1, F7).
pub fn read_header(buf: &[u8]) -> Result<Start, ProtocolError> {
    if let Some(what) = foreign_protocol(buf) {
        return Err(ProtocolError::ForeignProtocol(what));
    }
    match buf {
        [m1, lo, hi, m2, ..] => Ok(Start::Header(Header {
            modifier1: *m1,
            vars_size: u16::from_le_bytes([*lo, *hi]),
            modifier2: *m2,
        })),
        _ => Ok(Start::NeedMore),
    }
}

/// One raw var: byte ranges of key and value inside the vars block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawVar {
    pub key: (u32, u32),
    pub value: (u32, u32),
}

fn take_u16(block: &[u8], pos: usize) -> Option<usize> {
    match block.get(pos..pos.checked_add(2)?)? {
        [lo, hi] => Some(usize::from(u16::from_le_bytes([*lo, *hi]))),
        _ => None,
    }
}

/// Iterates the vars of a block (F3). Stops with an error on a zero-length key, a size that runs
/// past the block, or stray bytes at its end.
pub struct VarIter<'a> {
    block: &'a [u8],
    pos: usize,
}

impl<'a> VarIter<'a> {
    pub fn new(block: &'a [u8]) -> Self {
        Self { block, pos: 0 }
    }

    fn next_var(&mut self) -> Result<RawVar, ProtocolError> {
        let block = self.block;
        let pos = self.pos;
        let key_size = take_u16(block, pos).ok_or_else(|| {
            ProtocolError::invalid(format!(
                "vars block: truncated var, {} stray byte(s) at offset {pos}",
                block.len() - pos
            ))
        })?;
        if key_size == 0 {
            return Err(ProtocolError::invalid(format!(
                "vars block: zero-length key at offset {pos}"
            )));
        }
        let key_start = pos + 2;
        let key_end = key_start + key_size;
        let value_size = take_u16(block, key_end).ok_or_else(|| {
            ProtocolError::invalid(format!(
                "vars block: key at offset {pos} overruns the block"
            ))
        })?;
        let value_start = key_end + 2;
        let value_end = value_start + value_size;
        if value_end > block.len() {
            return Err(ProtocolError::invalid(format!(
                "vars block: value at offset {key_end} overruns the block"
            )));
        }
        self.pos = value_end;
        // The block is at most 65535 bytes, so every offset fits in u32.
        let r = |a: usize, b: usize| (a as u32, b as u32);
        Ok(RawVar {
            key: r(key_start, key_end),
            value: r(value_start, value_end),
        })
    }
}

impl Iterator for VarIter<'_> {
    type Item = Result<RawVar, ProtocolError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.block.len() {
            return None;
        }
        let item = self.next_var();
        if item.is_err() {
            // Stop after the first error.
            self.pos = self.block.len();
        }
        Some(item)
    }
}

/// Slices a `(start, end)` range out of a block; empty on a bad range (never panics).
#[inline]
pub fn slice(block: &[u8], (start, end): (u32, u32)) -> &[u8] {
    block.get(start as usize..end as usize).unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a vars block from pairs (test helper shared with other modules' tests).
    pub fn block(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in pairs {
            out.extend_from_slice(&(k.len() as u16).to_le_bytes());
            out.extend_from_slice(k);
            out.extend_from_slice(&(v.len() as u16).to_le_bytes());
            out.extend_from_slice(v);
        }
        out
    }

    /// Header + vars block (test helper).
    pub fn packet(modifier1: u8, pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let vars = block(pairs);
        let mut out = vec![modifier1];
        out.extend_from_slice(&(vars.len() as u16).to_le_bytes());
        out.push(0);
        out.extend_from_slice(&vars);
        out
    }

    #[test]
    fn f1_header_little_endian_any_size() {
        let start = read_header(&[0, 0xff, 0xff, 7]).unwrap();
        assert_eq!(
            start,
            Start::Header(Header {
                modifier1: 0,
                vars_size: 65535,
                modifier2: 7
            })
        );
        let Start::Header(h) = read_header(&[0, 0x34, 0x12, 0]).unwrap() else {
            panic!()
        };
        assert_eq!(h.vars_size, 0x1234);
        assert_eq!(h.head_size(), 4 + 0x1234);
    }

    #[test]
    fn f2_short_header_needs_more() {
        assert_eq!(read_header(&[]).unwrap(), Start::NeedMore);
        assert_eq!(read_header(&[0]).unwrap(), Start::NeedMore);
        assert_eq!(read_header(&[0, 1, 0]).unwrap(), Start::NeedMore);
    }

    #[test]
    fn f7_http_and_tls_detected_from_first_bytes() {
        for start in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST ",
            b"PUT ",
            b"DELETE /x",
            b"OPTI",
        ] {
            assert_eq!(
                read_header(start),
                Err(ProtocolError::ForeignProtocol("HTTP")),
                "{start:?}"
            );
        }
        assert_eq!(
            read_header(&[0x16, 0x03, 0x01, 0x02, 0x00]),
            Err(ProtocolError::ForeignProtocol("TLS"))
        );
        assert_eq!(
            read_header(&[0x16, 0x03]),
            Err(ProtocolError::ForeignProtocol("TLS"))
        );
        // A real uwsgi header is not mistaken for HTTP.
        assert!(read_header(&[0, 10, 0, 0]).is_ok());
        assert!(read_header(&[30, 10, 0, 0]).is_ok());
        // Upper-case first byte followed by binary is only a bad modifier, decided later.
        assert!(read_header(&[b'G', 10, 0, 0]).is_ok());
        assert_eq!(read_header(b"GE").unwrap(), Start::NeedMore);
        assert_eq!(read_header(b"GET").unwrap(), Start::NeedMore);
    }

    #[test]
    fn f3_vars_iterate() {
        let b = block(&[(b"A", b"1"), (b"BB", b"")]);
        let vars: Vec<_> = VarIter::new(&b).collect::<Result<_, _>>().unwrap();
        assert_eq!(vars.len(), 2);
        assert_eq!(slice(&b, vars[0].key), b"A");
        assert_eq!(slice(&b, vars[0].value), b"1");
        assert_eq!(slice(&b, vars[1].key), b"BB");
        assert_eq!(slice(&b, vars[1].value), b"");
    }

    #[test]
    fn f3_zero_key_overrun_and_stray_bytes() {
        let zero = block(&[(b"", b"x")]);
        assert!(VarIter::new(&zero).any(|r| r.is_err()));
        let mut overrun = block(&[(b"KEY", b"value")]);
        overrun.truncate(overrun.len() - 1);
        assert!(VarIter::new(&overrun).any(|r| r.is_err()));
        let mut key_overrun = vec![10, 0];
        key_overrun.extend_from_slice(b"AB");
        assert!(VarIter::new(&key_overrun).any(|r| r.is_err()));
        let mut stray = block(&[(b"K", b"v")]);
        stray.push(1);
        let results: Vec<_> = VarIter::new(&stray).collect();
        assert!(results[0].is_ok());
        assert!(results[1].is_err());
        assert_eq!(results.len(), 2);
    }
}
