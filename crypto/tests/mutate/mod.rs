//! Changes to valid encodings for the malformed-input tests: bit flips, truncation, extension,
//! insertion and repeated spans (which grow repeated fields and their counts).

use proptest::prelude::*;

/// A change to a valid encoding.
#[derive(Debug, Clone)]
pub enum Edit {
    Flip {
        at: usize,
        bit: u8,
    },
    Truncate {
        to: usize,
    },
    Extend(Vec<u8>),
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    /// A span repeated: repeated fields (and their counts) grow, up to hundreds of times.
    Repeat {
        at: usize,
        len: usize,
        times: u16,
    },
}

pub fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        any::<usize>().prop_map(|to| Edit::Truncate { to }),
        proptest::collection::vec(any::<u8>(), 1..32).prop_map(Edit::Extend),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        (any::<usize>(), 1usize..64, 1u16..400).prop_map(|(at, len, times)| Edit::Repeat {
            at,
            len,
            times
        }),
    ]
}

pub fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
    for edit in edits {
        let n = bytes.len();
        match edit {
            Edit::Flip { at, bit } if n > 0 => bytes[at % n] ^= 1 << bit,
            Edit::Truncate { to } => bytes.truncate(to % (n + 1)),
            Edit::Extend(extra) => bytes.extend_from_slice(extra),
            Edit::Insert { at, bytes: extra } => {
                let at = at % (n + 1);
                bytes.splice(at..at, extra.iter().copied());
            }
            Edit::Repeat { at, len, times } if n > 0 => {
                let start = at % n;
                let span = bytes[start..(start + len).min(n)].to_vec();
                let copies: Vec<u8> = span.repeat(*times as usize);
                bytes.splice(start..start, copies);
            }
            _ => {}
        }
    }
}
