//! Reading files that another party wrote (auditor bundles, the encrypted aggregate and its
//! transcript, fairness reports, models), refusing one larger than the caller's limit before
//! its bytes are read: a hostile or corrupt file cannot make a party allocate without bound.

use std::io::Read as _;
use std::path::Path;

/// Why a file from another party was not read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadError {
    /// The file cannot be opened or read (missing, permissions, not UTF-8 where text is due).
    #[error("{path}: {reason}")]
    Io {
        /// The file, as the caller named it.
        path: String,
        /// What the operating system (or the UTF-8 check) said.
        reason: String,
    },
    /// The file is larger than what is accepted for its kind.
    #[error("{path}: {size} bytes, more than the {limit} bytes accepted for {what}")]
    TooLarge {
        /// The file, as the caller named it.
        path: String,
        /// The kind of file (e.g. "auditor bundle").
        what: &'static str,
        /// The file's size in bytes.
        size: u64,
        /// The most bytes accepted for its kind.
        limit: u64,
    },
}

/// The bytes of `path`, a file holding `what`, if it has at most `limit` bytes. The size is
/// checked before reading and again while reading (the file may grow in between).
pub fn read_limited(path: &Path, what: &'static str, limit: u64) -> Result<Vec<u8>, ReadError> {
    let io = |e: std::io::Error| ReadError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let too_large = |size| ReadError::TooLarge {
        path: path.display().to_string(),
        what,
        size,
        limit,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > limit {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// [`read_limited`] for a text file (UTF-8).
pub fn read_text_limited(path: &Path, what: &'static str, limit: u64) -> Result<String, ReadError> {
    String::from_utf8(read_limited(path, what, limit)?).map_err(|e| ReadError::Io {
        path: path.display().to_string(),
        reason: format!("not UTF-8 text: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_the_limit_is_refused_with_its_size_and_one_at_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        std::fs::write(&path, vec![b'x'; 101]).unwrap();
        let error = read_limited(&path, "a report", 100).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{}: 101 bytes, more than the 100 bytes accepted for a report",
                path.display()
            )
        );
        assert_eq!(
            read_text_limited(&path, "a report", 101).unwrap().len(),
            101
        );
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(
            read_text_limited(&path, "a report", 100)
                .unwrap_err()
                .to_string()
                .contains("not UTF-8")
        );
        let missing = read_limited(&dir.path().join("none"), "a report", 100).unwrap_err();
        assert!(matches!(missing, ReadError::Io { .. }), "{missing}");
    }
}
