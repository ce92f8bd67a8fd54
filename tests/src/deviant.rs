//! A participant that deviates from the protocol on purpose, for end-to-end tests: a real
//! member of the consortium (its own certificate, over mutual-TLS gRPC), running the real
//! `ParticipantSession` for every aggregation, that contributes zeros (a valid input of a
//! participant with no records) except where its script tells it to cheat, and then alters its
//! own messages and re-signs them with its own key, as a malicious organization could.

use accord_crypto::secagg::validity;
use accord_crypto::secagg::{self, Context, Requirements};
use accord_crypto::secagg::{ParticipantSession, PhaseEncoding};
use accord_crypto::secagg::{Signer, Trust};
use accord_proto::phase::PhaseVector;
use accord_proto::v1::federation_client::FederationClient;
use accord_proto::v1::{
    AwaitRoundRequest, FederationDefinition, Header, Phase, RegisterRequest, SecAggAwaitRequest,
    SecAggRelay, SecAggStage, ShareKeys, SignedStageMessage, UnmaskShares,
};
use prost::Message;
use std::collections::BTreeMap;
use std::sync::Arc;
use tonic::transport::Channel;

/// How the deviant cheats in one phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deviation {
    /// Share ciphertexts that do not decrypt, each validly signed by the deviant.
    UndecryptableShares,
    /// At unmask, every revealed share altered (still a field element).
    WrongShares,
    /// A masked input whose first word is far outside its bound, with the validity proof of
    /// its honest (zero) input: the unmasked sum no longer matches the commitments.
    OutOfRange,
    /// A fit vector with the sample count 1 and every weighted weight at its encoding bound
    /// (n·w = max_rows·clip, a weight of max_rows·clip once divided by the count), with the
    /// validity proof of its honest (zero) input, since no proof of the poisoned one exists.
    Poison,
    /// The poisoned fit vector of [`Deviation::Poison`] with a validity proof made for another
    /// participant (it verifies for no one else): refused when the stage closes.
    ForgedProof,
}

/// Which deviation in which phase of which round.
pub type Script = BTreeMap<(u32, Phase), Deviation>;

/// What the deviant went through: each phase it took part in, and the first refusal it met.
#[derive(Debug, Default)]
pub struct DeviantLog {
    pub phases: Vec<(u32, Phase)>,
    pub refusals: Vec<String>,
}

/// Runs the deviant until the federation finishes (or refuses it altogether).
pub async fn run(
    mut client: FederationClient<Channel>,
    signer: Arc<Signer>,
    trust: Trust,
    federation_id: &str,
    script: Script,
) -> DeviantLog {
    let mut log = DeviantLog::default();
    let registration = RegisterRequest {
        header: Some(Header::new(federation_id, 0)),
    };
    let (definition, session) = match client.register(registration).await {
        Ok(r) => {
            let r = r.into_inner();
            (r.federation.unwrap_or_default(), r.session)
        }
        Err(status) => {
            log.refusals.push(status.message().to_owned());
            return log;
        }
    };
    let header = |round| Some(Header::new(federation_id, round).in_session(session));
    let (mut round, mut completed) = (0, Phase::Unspecified);
    loop {
        let announcement = match client
            .await_round(AwaitRoundRequest {
                header: header(round),
                completed_phase: completed as i32,
            })
            .await
        {
            Ok(a) => a.into_inner(),
            Err(status) => {
                log.refusals.push(status.message().to_owned());
                return log;
            }
        };
        if announcement.pending {
            continue;
        }
        let phase = announcement.phase();
        let next = announcement.header.map_or(0, |h| h.round);
        if phase == Phase::Finished {
            return log;
        }
        if announcement.selected && phase != Phase::Fairness {
            log.phases.push((next, phase));
            let deviation = script.get(&(next, phase)).copied();
            let context = Context {
                federation: federation_id.to_owned(),
                round: next,
                phase,
            };
            if let Err(reason) = take_part(
                &mut client,
                session,
                &signer,
                &trust,
                &definition,
                context,
                deviation,
            )
            .await
            {
                log.refusals.push(reason);
            }
        }
        (round, completed) = (next, phase);
    }
}

/// A phase's vector in a federation without mitigation, as an honest node builds it.
fn vector(definition: &FederationDefinition, phase: Phase) -> PhaseVector {
    let schema = definition.schema.clone().unwrap_or_default();
    let params = definition.secure_aggregation.clone().unwrap_or_default();
    let rows = params.max_rows_per_participant;
    let columns = accord_proto::layout::encoded_columns(&schema).len();
    match phase {
        Phase::Standardize => PhaseVector::standardize(&schema, None, rows).unwrap(),
        Phase::Fit => PhaseVector::fit(columns, params.clip, rows, None),
        _ => PhaseVector::evaluate(
            &schema,
            None,
            None,
            &definition.evaluation.unwrap_or_default(),
            rows,
        ),
    }
}

async fn take_part(
    client: &mut FederationClient<Channel>,
    registration: u64,
    signer: &Arc<Signer>,
    trust: &Trust,
    definition: &FederationDefinition,
    context: Context,
    deviation: Option<Deviation>,
) -> Result<(), String> {
    let params = definition.secure_aggregation.clone().unwrap_or_default();
    let requirements = Requirements::new(&params, definition.min_participants as usize, 0);
    let (mut session, advertisement) = ParticipantSession::start(
        signer.clone(),
        trust.clone(),
        context.clone(),
        requirements,
        &mut rand::rng(),
    );
    submit(client, advertisement).await?;
    let vector = vector(definition, context.phase);
    let mut selected = 0;
    loop {
        let relay = await_stage(client, registration, &context, session.completed()).await?;
        let message = match relay.stage() {
            SecAggStage::ShareKeys => {
                selected = relay.selected.len();
                let message = session
                    .share_keys(&relay, &mut rand::rng())
                    .map_err(|e| e.to_string())?;
                if deviation == Some(Deviation::UndecryptableShares) {
                    let plan = session.plan_digest().ok_or("no plan after share keys")?;
                    spoil_shares(signer, &context, &plan, message)
                } else {
                    message
                }
            }
            SecAggStage::MaskedInput => {
                let PhaseEncoding {
                    encoding,
                    statement,
                } = PhaseEncoding::new(&vector, &params, selected).map_err(|e| e.to_string())?;
                let zeros = vec![0.0; encoding.len()];
                let honest = encoding.encode(&zeros).map_err(|e| e.to_string())?.words;
                let mut words = honest.clone();
                if matches!(deviation, Some(Deviation::Poison | Deviation::ForgedProof)) {
                    let mut values = zeros.clone();
                    let last = values.len() - 1;
                    let rows = params.max_rows_per_participant as f64;
                    values[..last].fill(rows * params.clip);
                    values[last] = 1.0;
                    words = encoding.encode(&values).map_err(|e| e.to_string())?.words;
                }
                if deviation == Some(Deviation::OutOfRange) {
                    words[0] = words[0].wrapping_add(1 << 30) & encoding.modulus().mask();
                }
                let modulus = encoding.modulus();
                // The proof it can make: of its honest input, bound to itself or (forged) to
                // another participant.
                let bound_to = if deviation == Some(Deviation::ForgedProof) {
                    "org-1"
                } else {
                    signer.name()
                };
                let binding = context.validity_binding(bound_to);
                session
                    .masked_input_with(&relay, words, modulus, |sealed| {
                        let validity = statement
                            .as_ref()
                            .map(|statement| {
                                let blindings = sealed.seeds.blindings(honest.len());
                                validity::prove(statement, &honest, &blindings, &binding)
                            })
                            .transpose()?
                            .map(|proof| proof.to_message());
                        Ok(accord_proto::v1::MaskedInput {
                            words: secagg::words_to_bytes(sealed.masked, modulus),
                            validity,
                        }
                        .encode_to_vec())
                    })
                    .map_err(|e| e.to_string())?
                    .message
            }
            SecAggStage::ConsistencyCheck => session
                .consistency_check(&relay)
                .map_err(|e| e.to_string())?,
            SecAggStage::Unmask => {
                let message = session.unmask(&relay).map_err(|e| e.to_string())?;
                if deviation == Some(Deviation::WrongShares) {
                    spoil_unmask(signer, &context, message)
                } else {
                    message
                }
            }
            _ => {
                return if relay.aborted.is_empty() {
                    Ok(())
                } else {
                    Err(relay.aborted)
                };
            }
        };
        submit(client, message).await?;
    }
}

/// Replaces every share ciphertext with bytes that do not decrypt, re-signing each share and
/// the message with the deviant's own key: its holders can only tell the shares are bad.
fn spoil_shares(
    signer: &Signer,
    context: &Context,
    plan: &[u8; 32],
    message: SignedStageMessage,
) -> SignedStageMessage {
    let mut body = ShareKeys::decode(message.body.as_slice()).unwrap();
    for share in &mut body.shares {
        for byte in &mut share.ciphertext {
            *byte ^= 0x5a;
        }
        share.signature = signer.sign_digest(&context.share_signing_digest(
            plan,
            signer.name(),
            &share.to,
            &share.self_mask_share_commitment,
            &share.key_share_commitment,
            &share.nonce,
            &share.ciphertext,
        ));
    }
    signer.sign(context, SecAggStage::ShareKeys, body.encode_to_vec())
}

/// Alters the last byte of every share it reveals (the value stays below the field's prime).
fn spoil_unmask(
    signer: &Signer,
    context: &Context,
    message: SignedStageMessage,
) -> SignedStageMessage {
    let mut body = UnmaskShares::decode(message.body.as_slice()).unwrap();
    for share in body
        .self_mask_shares
        .iter_mut()
        .chain(body.key_shares.iter_mut())
    {
        if let Some(last) = share.share.last_mut() {
            *last ^= 1;
        }
    }
    signer.sign(context, SecAggStage::Unmask, body.encode_to_vec())
}

async fn submit(
    client: &mut FederationClient<Channel>,
    message: SignedStageMessage,
) -> Result<(), String> {
    client
        .sec_agg_submit(message)
        .await
        .map(|_| ())
        .map_err(|status| status.message().to_owned())
}

async fn await_stage(
    client: &mut FederationClient<Channel>,
    registration: u64,
    context: &Context,
    completed: SecAggStage,
) -> Result<SecAggRelay, String> {
    loop {
        let relay = client
            .sec_agg_await(SecAggAwaitRequest {
                header: Some(
                    Header::new(&context.federation, context.round).in_session(registration),
                ),
                phase: context.phase as i32,
                completed_stage: completed as i32,
            })
            .await
            .map_err(|status| status.message().to_owned())?
            .into_inner();
        if !relay.pending {
            return Ok(relay);
        }
    }
}
