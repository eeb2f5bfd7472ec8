//! The uwsgi parser on arbitrary bytes: never a panic, the verdict does not depend on where
//! the stream is cut (F2, X4), and a head is accepted exactly when its names and values pass
//! V2, checked here byte by byte against what the parser's fast paths decide (known names,
//! values scanned eight bytes at a time).
#![no_main]

use _native::framing::{slice, VarIter, HEADER_SIZE};
use _native::keys::key_index;
use _native::vars::{parse_head, Head, Kind, Limits, Progress};
use libfuzzer_sys::fuzz_target;

/// V2 by the letter: names printable ASCII without space; no CR, LF or NUL in the value of a
/// request header or a var the server interprets.
fn v2_holds(block: &[u8]) -> Option<bool> {
    let mut ok = true;
    for raw in VarIter::new(block) {
        let raw = raw.ok()?;
        let key = slice(block, raw.key);
        let value = slice(block, raw.value);
        if !key.iter().all(|b| (0x21..=0x7e).contains(b)) {
            ok = false;
            continue;
        }
        let checked = matches!(
            Kind::of(key),
            Kind::Control(_) | Kind::Http | Kind::HiddenHttp
        );
        if checked && value.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n') {
            ok = false;
        }
    }
    Some(ok)
}

/// What an accepted head says of each var agrees with its name.
fn check_vars(head: &Head, block: &[u8]) {
    for var in &head.vars {
        let key = slice(block, var.raw.key);
        assert_eq!(var.known(), key_index(key));
        assert_eq!(var.kind, Kind::of(key));
    }
}

fn verdict(buf: &[u8], limits: &Limits) -> Result<(usize, u64, usize), u16> {
    match parse_head(buf, limits) {
        Ok(Progress::Done(h)) => Ok((h.header.head_size(), h.content_length, h.vars.len())),
        Ok(Progress::NeedMore(n)) => Ok((n, u64::MAX, 0)),
        Err(e) => Err(e.status()),
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        request_line: 4094,
        fields: 100,
        field_size: 8190,
    };
    let whole = verdict(data, &limits);
    if let Ok(Progress::Done(head)) = parse_head(data, &limits) {
        let block = &data[HEADER_SIZE..head.header.head_size()];
        assert_eq!(v2_holds(block), Some(true));
        check_vars(&head, block);
    } else if let Some(block) = data
        .get(1..3)
        .map(|s| usize::from(u16::from_le_bytes([s[0], s[1]])))
        .and_then(|n| data.get(HEADER_SIZE..HEADER_SIZE + n))
    {
        // A complete block that breaks V2 is refused (it may be refused for other reasons too).
        if v2_holds(block) == Some(false) {
            assert!(whole.is_err());
        }
    }
    if let Some((&cut, rest)) = data.split_first() {
        let cut = usize::from(cut).min(rest.len());
        let part = &data[..cut];
        match parse_head(part, &limits) {
            Ok(Progress::NeedMore(n)) => assert!(n > part.len()),
            _ => assert_eq!(verdict(part, &limits), whole),
        }
    }
});
