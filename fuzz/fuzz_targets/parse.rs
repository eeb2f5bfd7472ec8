//! The uwsgi parser on arbitrary bytes: never a panic, the verdict does not depend on where
//! the stream is cut (F2, X4), and a head is accepted exactly when its names and values pass
//! V2, checked here byte by byte against what the parser's fast paths decide (known names,
//! values scanned eight bytes at a time), and repeated vars count as V3 says, checked against
//! a plain reading of the rule.
#![no_main]

use _native::core::framing::{slice, VarIter, HEADER_SIZE};
use _native::core::keys::key_index;
use _native::core::kind::{last_wins, Control, Kind};
use _native::core::vars::{parse_head, Head, Limits, Progress, NONE};
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

/// What an accepted head says of each var agrees with its name, and each repeated name counts
/// as V3 says: one copy reaches the environ; for a var whose last copy wins it has the last
/// value; for a joined header its chain holds every value in order, a value equal to the one
/// before it collapsed; a control var is the copy the decisions read.
fn check_vars(head: &Head, block: &[u8]) {
    let value = |i: usize| slice(block, head.vars[i].raw.value);
    for (i, var) in head.vars.iter().enumerate() {
        let key = slice(block, var.raw.key);
        assert_eq!(var.known(), key_index(key));
        assert_eq!(var.kind, Kind::of(key));
        assert!(!var.superseded || var.shadowed);
        let copies: Vec<usize> = (0..head.vars.len())
            .filter(|&j| slice(block, head.vars[j].raw.key) == key)
            .collect();
        let counting: Vec<usize> = copies
            .iter()
            .copied()
            .filter(|&j| !head.vars[j].shadowed)
            .collect();
        assert_eq!(counting.len(), 1);
        let first = counting[0];
        if i != copies[0] {
            continue;
        }
        let mut values: Vec<&[u8]> = copies.iter().map(|&j| value(j)).collect();
        values.dedup();
        if last_wins(var.kind, key) {
            assert_eq!(value(first), value(*copies.last().unwrap()));
        } else {
            let mut chain = vec![value(first)];
            let mut next = head.vars[first].next_repeat;
            while next != NONE {
                chain.push(value(usize::from(next)));
                next = head.vars[usize::from(next)].next_repeat;
            }
            assert_eq!(chain, values);
        }
        if let Kind::Control(c) = var.kind {
            assert_eq!(usize::from(head.control[c as usize]), first);
            assert_eq!(head.control_value(block, c), Some(value(first)));
        }
    }
    for c in Control::ALL {
        if !head.has(c) {
            assert!(head.vars.iter().all(|v| v.kind != Kind::Control(c)));
        }
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
