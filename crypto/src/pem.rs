//! PEM files (certificates, private keys, CRLs), read with errors that name the file, so every
//! file a node is configured with is refused at start in the same clear words.

use std::io;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::{self, PemObject};

/// Why a PEM file gave nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum PemFileError {
    /// The file cannot be read (missing, permissions).
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file concerned.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file is not well-formed PEM.
    #[error("{path} is not valid PEM: {source}")]
    Pem {
        /// The file concerned.
        path: PathBuf,
        /// The PEM parser's error.
        source: pem::Error,
    },
    /// The file holds no PEM section of the kind needed, `what` (e.g. "certificate").
    #[error("{path} contains no PEM {what}")]
    Empty {
        /// The file concerned.
        path: PathBuf,
        /// The kind of section needed (e.g. "certificate").
        what: &'static str,
    },
}

/// Every section of type `T` in the PEM file `path`, in order (sections of other types are
/// skipped); at least one, or [`PemFileError::Empty`] naming `what`.
pub(crate) fn read_all<T: PemObject>(
    path: &Path,
    what: &'static str,
) -> Result<Vec<T>, PemFileError> {
    let all = sections(path)?;
    if all.is_empty() {
        return Err(empty(path, what));
    }
    Ok(all)
}

/// The first section of type `T` in the PEM file `path`.
pub(crate) fn read_first<T: PemObject>(path: &Path, what: &'static str) -> Result<T, PemFileError> {
    sections(path)?
        .into_iter()
        .next()
        .ok_or_else(|| empty(path, what))
}

fn sections<T: PemObject>(path: &Path) -> Result<Vec<T>, PemFileError> {
    let text = std::fs::read(path).map_err(|source| PemFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    T::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| PemFileError::Pem {
            path: path.to_owned(),
            source,
        })
}

fn empty(path: &Path, what: &'static str) -> PemFileError {
    PemFileError::Empty {
        path: path.to_owned(),
        what,
    }
}
