//! Validity of the fairness counts, which the coordinator never sees: they are masked and
//! encrypted under the auditor's tfhe key, so a participant could otherwise inflate a small
//! group's count to lift it over the suppression threshold and expose the other members'
//! small-group counts.
//!
//! The auditor holds a second, Ristretto key pair: the opening key a and the commitment key
//! A = a·G (G the basepoint), carried in its signed public bundle. A participant commits to each
//! count c_j (unmasked) as the pair R_j = r_j·G, V_j = c_j·G + (r_j + ρ_j)·A, with r_j fresh
//! and ρ_j expanded from its secure-aggregation seeds like its masks
//! ([`crate::secagg::mask::add_blindings`]), and proves with Bulletproofs, under
//! `PedersenGens { B: G, B_blinding: A }`, that every count lies in [0, max_rows] and meets the
//! layout's relations (true positives at most positives at most n, ...). The coordinator
//! verifies each proof ([`verify_counts`]) and sums R and V over the contributors
//! ([`CountSum`]); after decrypting the aggregate S, the auditor checks, for each group it
//! discloses, S_j·G = ΣV_j − a·ΣR_j − (Σρ)_j·A, Σρ rebuilt from the unmasking secrets as for
//! the plain phases ([`CountSum::open`]). A count that differs from the committed one, in a
//! group the auditor discloses, fails the check; one beyond its bound fails its range proof.
//!
//! Why both R and ρ. Without R (V = c·G + ρ·A), the coordinator, which rebuilds Σρ, would get
//! Σc·G and find small counts by trying them; R makes the sum an ElGamal encryption only `a`
//! opens. Without ρ (V = c·G + r·A), the auditor would open each participant's V − a·R = c·G
//! and find its small counts; with ρ it gets c·G + ρ·A, hidden by the pairwise blindings it
//! cannot rebuild. The auditor learns Σc·G for the groups it checks, which it decrypts anyway.
//! The auditor knows log_G A, so a participant colluding with it could open V_j to another
//! count: the range proofs are sound against participants, not against the auditor.

use super::{
    Statement, ValidityError, check_len, commit, decompress, points_from_bytes, points_to_bytes,
    prove_forms, random_scalars, range_proofs_from_bytes, transcript, verify_forms,
};
use accord_proto::v1;
use bulletproofs::{PedersenGens, RangeProof};
use curve25519_dalek::constants::{RISTRETTO_BASEPOINT_POINT, RISTRETTO_BASEPOINT_TABLE};
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{Identity, IsIdentity, VartimeMultiscalarMul};
use zeroize::Zeroize;

/// The auditor's opening key a: it opens sums of count commitments. Wiped when dropped.
#[derive(Clone)]
pub struct CountOpeningKey(Scalar);

impl Drop for CountOpeningKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The auditor's commitment key A = a·G, under which participants commit to their counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountCommitmentKey(RistrettoPoint);

impl CountOpeningKey {
    /// A fresh key from the thread's CSPRNG.
    pub fn generate() -> Self {
        let mut scalars = random_scalars(1);
        Self(scalars.pop().unwrap_or(Scalar::ONE))
    }

    /// A = a·G.
    pub fn commitment_key(&self) -> CountCommitmentKey {
        CountCommitmentKey(&self.0 * RISTRETTO_BASEPOINT_TABLE)
    }

    /// The canonical 32-byte little-endian encoding of a.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Reads a key written by [`Self::to_bytes`]; refuses a non-canonical or zero scalar.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, ValidityError> {
        Option::<Scalar>::from(Scalar::from_canonical_bytes(bytes))
            .filter(|a| *a != Scalar::ZERO)
            .map(Self)
            .ok_or_else(|| ValidityError::Malformed("not a canonical non-zero scalar".into()))
    }
}

impl std::fmt::Debug for CountOpeningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CountOpeningKey(..)")
    }
}

impl CountCommitmentKey {
    /// The compressed Ristretto encoding of A.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.compress().to_bytes()
    }

    /// Reads a key written by [`Self::to_bytes`]; refuses anything but 32 bytes of a canonical
    /// point other than the identity.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ValidityError> {
        CompressedRistretto::from_slice(bytes)
            .ok()
            .and_then(|p| p.decompress())
            .filter(|p| !p.is_identity())
            .map(Self)
            .ok_or_else(|| {
                ValidityError::Malformed("the count commitment key is not a canonical point".into())
            })
    }

    fn generators(&self) -> PedersenGens {
        PedersenGens {
            B: RISTRETTO_BASEPOINT_POINT,
            B_blinding: self.0,
        }
    }
}

/// A participant's count commitments (R_j, V_j) and the range proofs over its statement.
#[derive(Debug, Clone)]
pub struct CountProof {
    randomness: Vec<CompressedRistretto>,
    commitments: Vec<CompressedRistretto>,
    range_proofs: Vec<RangeProof>,
}

/// A verified participant's (R_j, V_j), to add to a [`CountSum`].
#[derive(Debug, Clone, PartialEq)]
pub struct CountCommitments {
    randomness: Vec<RistrettoPoint>,
    commitments: Vec<RistrettoPoint>,
}

/// Commits to `counts` (unmasked, as the layout orders them) under `key` with blindings ρ =
/// `blindings` plus fresh randomness, and proves they meet `statement`
/// ([`Statement::counts`] with the fairness layout's relations).
///
/// # Errors
/// Lengths that differ from the statement's; a count that breaks a form (named).
pub fn prove_counts(
    statement: &Statement,
    counts: &[u64],
    blindings: &[Scalar],
    key: &CountCommitmentKey,
    binding: &[u8],
) -> Result<CountProof, ValidityError> {
    check_len("counts", statement.len(), counts.len())?;
    check_len("blindings", statement.len(), blindings.len())?;
    let gens = key.generators();
    let fresh = random_scalars(counts.len());
    let randomness: Vec<CompressedRistretto> = fresh
        .iter()
        .map(|r| (r * RISTRETTO_BASEPOINT_TABLE).compress())
        .collect();
    let hiding: Vec<Scalar> = fresh
        .iter()
        .zip(blindings)
        .map(|(r, rho)| r + rho)
        .collect();
    let commitments = commit(&gens, counts, &hiding);
    let key_bytes = [key.0.compress()];
    let mut transcript = transcript(
        b"counts",
        statement,
        binding,
        &[&key_bytes, &randomness, &commitments],
    );
    let range_proofs = prove_forms(statement, counts, &hiding, &gens, &mut transcript)?;
    Ok(CountProof {
        randomness,
        commitments,
        range_proofs,
    })
}

/// Verifies `proof` against `statement`, `key` and `binding`; returns the pairs to sum.
///
/// # Errors
/// A wrong number of points, a non-canonical point (named), a range proof that does not verify.
pub fn verify_counts(
    statement: &Statement,
    proof: &CountProof,
    key: &CountCommitmentKey,
    binding: &[u8],
) -> Result<CountCommitments, ValidityError> {
    check_len("randomness points", statement.len(), proof.randomness.len())?;
    check_len("commitments", statement.len(), proof.commitments.len())?;
    let randomness = decompress(&proof.randomness, "randomness point")?;
    let commitments = decompress(&proof.commitments, "commitment")?;
    let key_bytes = [key.0.compress()];
    let mut transcript = transcript(
        b"counts",
        statement,
        binding,
        &[&key_bytes, &proof.randomness, &proof.commitments],
    );
    verify_forms(
        statement,
        &commitments,
        &proof.range_proofs,
        &key.generators(),
        &mut transcript,
    )?;
    Ok(CountCommitments {
        randomness,
        commitments,
    })
}

impl CountProof {
    /// The wire form.
    pub fn to_message(&self) -> v1::CountValidityProof {
        v1::CountValidityProof {
            randomness: points_to_bytes(&self.randomness),
            commitments: points_to_bytes(&self.commitments),
            range_proofs: self.range_proofs.iter().map(RangeProof::to_bytes).collect(),
        }
    }

    /// Reads the wire form for `statement`, refusing any length other than the statement's
    /// before allocating.
    pub fn from_message(
        statement: &Statement,
        message: &v1::CountValidityProof,
    ) -> Result<Self, ValidityError> {
        Ok(Self {
            randomness: points_from_bytes(&message.randomness, statement.len(), "randomness")?,
            commitments: points_from_bytes(&message.commitments, statement.len(), "commitment")?,
            range_proofs: range_proofs_from_bytes(statement, &message.range_proofs)?,
        })
    }
}

/// The sums ΣR_j and ΣV_j over the contributors, which the coordinator hands the auditor.
#[derive(Debug, Clone, PartialEq)]
pub struct CountSum {
    randomness: Vec<RistrettoPoint>,
    commitments: Vec<RistrettoPoint>,
}

impl CountSum {
    /// An empty sum over `len` counts.
    pub fn new(len: usize) -> Self {
        Self {
            randomness: vec![RistrettoPoint::identity(); len],
            commitments: vec![RistrettoPoint::identity(); len],
        }
    }

    /// Adds one participant's verified pairs.
    pub fn add(&mut self, pairs: &CountCommitments) -> Result<(), ValidityError> {
        check_len(
            "commitments",
            self.commitments.len(),
            pairs.commitments.len(),
        )?;
        check_len(
            "randomness points",
            self.randomness.len(),
            pairs.randomness.len(),
        )?;
        for (sum, point) in self.randomness.iter_mut().zip(&pairs.randomness) {
            *sum += point;
        }
        for (sum, point) in self.commitments.iter_mut().zip(&pairs.commitments) {
            *sum += point;
        }
        Ok(())
    }

    /// The wire form (the coordinator to the auditor).
    pub fn to_message(&self) -> v1::CountCommitmentSum {
        let compress = |points: &[RistrettoPoint]| -> Vec<u8> {
            points
                .iter()
                .flat_map(|p| p.compress().to_bytes())
                .collect()
        };
        v1::CountCommitmentSum {
            randomness: compress(&self.randomness),
            commitments: compress(&self.commitments),
        }
    }

    /// Reads the wire form of a sum over `len` counts, refusing other lengths before allocating
    /// and non-canonical points.
    pub fn from_message(
        len: usize,
        message: &v1::CountCommitmentSum,
    ) -> Result<Self, ValidityError> {
        let randomness = points_from_bytes(&message.randomness, len, "randomness")?;
        let commitments = points_from_bytes(&message.commitments, len, "commitment")?;
        Ok(Self {
            randomness: decompress(&randomness, "randomness point")?,
            commitments: decompress(&commitments, "commitment")?,
        })
    }

    /// The auditor's check that each `(position, decrypted sum S)` in `disclosed` is the sum of
    /// the committed counts: S·G = ΣV − a·ΣR − σ·A at every such position, σ = `blinding_sum`
    /// (one per count, rebuilt from the unmasking secrets). All at once with random weights in
    /// one multiscalar multiplication, then, only on failure, one by one to name the first
    /// position that differs.
    pub fn open(
        &self,
        key: &CountOpeningKey,
        disclosed: &[(usize, u64)],
        blinding_sum: &[Scalar],
    ) -> Result<(), ValidityError> {
        let len = self.commitments.len();
        check_len("blinding sums", len, blinding_sum.len())?;
        if let Some(&(index, _)) = disclosed.iter().find(|(at, _)| *at >= len) {
            return Err(ValidityError::Length {
                what: "counts (a disclosed position beyond them)",
                expected: len,
                got: index + 1,
            });
        }
        let a = key.0;
        let commitment_key = key.commitment_key().0;
        // S·G + σ·A + a·R − V, at position `at` weighted by w.
        let terms = |&(at, sum): &(usize, u64), w: Scalar| {
            [
                (w * Scalar::from(sum), RISTRETTO_BASEPOINT_POINT),
                (w * blinding_sum[at], commitment_key),
                (w * a, self.randomness[at]),
                (-w, self.commitments[at]),
            ]
        };
        let weights = random_scalars(disclosed.len());
        let (scalars, points): (Vec<Scalar>, Vec<RistrettoPoint>) = disclosed
            .iter()
            .zip(weights)
            .flat_map(|(d, w)| terms(d, w))
            .unzip();
        if RistrettoPoint::vartime_multiscalar_mul(&scalars, &points).is_identity() {
            return Ok(());
        }
        let index = disclosed
            .iter()
            .find(|d| {
                let (scalars, points): (Vec<Scalar>, Vec<RistrettoPoint>) =
                    terms(d, Scalar::ONE).into_iter().unzip();
                !RistrettoPoint::vartime_multiscalar_mul(&scalars, &points).is_identity()
            })
            .map_or(0, |&(at, _)| at);
        Err(ValidityError::SumMismatch { index })
    }
}
