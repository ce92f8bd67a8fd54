//! The `accord.v1.Federation` gRPC service: checks who is calling (from the mutual-TLS
//! certificate, never from a request field, and against the current CRL at every request, so a
//! revocation also ends connections made before it) and hands each request to the
//! [`Federation`].

use crate::federation::{Federation, Refusal};
use crate::listener::Peer;
use accord_crypto::crl::CrlWatch;
use accord_crypto::pki::Role;
use accord_proto::v1::federation_server::Federation as FederationRpc;
use accord_proto::v1::{
    AwaitRoundRequest, EvaluationUpload, GlobalModel, ModelRequest, Phase, RegisterRequest,
    RegisterResponse, RoundAnnouncement, SecAggAwaitRequest, SecAggRelay, SignedStageMessage,
    StatusRequest, StatusResponse, UpdateUpload, UploadReceipt,
};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};
use tracing::warn;

/// How long a round announcement is held open before the participant is told to poll again.
const LONG_POLL: Duration = Duration::from_secs(20);

/// The coordinator's gRPC service: authenticates each caller by its certificate and hands its
/// requests to the federation.
pub struct FederationService {
    federation: Arc<Federation>,
    crl: Option<Arc<CrlWatch>>,
}

impl FederationService {
    /// The service for `federation`; with `crl`, callers whose certificate it revokes are
    /// refused.
    pub fn new(federation: Arc<Federation>, crl: Option<Arc<CrlWatch>>) -> Self {
        Self { federation, crl }
    }

    /// The authenticated caller's name; it must hold one of `roles`.
    fn caller<T>(&self, request: &Request<T>, rpc: &str, roles: &[Role]) -> Result<String, Status> {
        Ok(self.peer(request, rpc, roles)?.identity.name.clone())
    }

    /// The authenticated caller; it must hold one of `roles` and a certificate not revoked.
    fn peer<'a, T>(
        &self,
        request: &'a Request<T>,
        rpc: &str,
        roles: &[Role],
    ) -> Result<&'a Peer, Status> {
        let peer = request.extensions().get::<Peer>().ok_or_else(|| {
            Status::unauthenticated("no authenticated client certificate on this connection")
        })?;
        let name = &peer.identity.name;
        let revoked = self
            .crl
            .as_ref()
            .and_then(|crl| crl.current().revoked_serial(&peer.certificate));
        if let Some(serial) = revoked {
            warn!(%name, serial, rpc, "refused: certificate revoked");
            return Err(Status::permission_denied(format!(
                "the certificate of '{name}' (serial {serial}) has been revoked"
            )));
        }
        if !roles.contains(&peer.identity.role) {
            warn!(%name, role = %peer.identity.role, rpc, "refused: wrong role");
            return Err(Status::permission_denied(format!(
                "{rpc} is not open to '{name}' with role {}",
                peer.identity.role
            )));
        }
        Ok(peer)
    }
}

fn refuse<'a>(rpc: &'static str, name: &'a str) -> impl FnOnce(Refusal) -> Status + 'a {
    move |refusal| {
        warn!(participant = name, rpc, reason = %refusal, "refused");
        let message = refusal.to_string();
        match refusal {
            Refusal::WrongFederation { .. } => Status::not_found(message),
            Refusal::MissingHeader | Refusal::Aggregation(_) => Status::invalid_argument(message),
            Refusal::WrongRound { .. } | Refusal::NoModel(..) | Refusal::Closed(_) => {
                Status::failed_precondition(message)
            }
            Refusal::NotRegistered(_)
            | Refusal::Replaced(_)
            | Refusal::NoSession(_)
            | Refusal::NotOnRoster(_)
            | Refusal::NotSelected(_)
            | Refusal::NotObserver(_) => Status::permission_denied(message),
            Refusal::Failed(_) => Status::aborted(message),
        }
    }
}

#[tonic::async_trait]
impl FederationRpc for FederationService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let name = self.caller(&request, "Register", &[Role::Participant])?;
        let header = request.get_ref().header.as_ref();
        self.federation
            .register(&name, header)
            .map(Response::new)
            .map_err(refuse("Register", &name))
    }

    async fn await_round(
        &self,
        request: Request<AwaitRoundRequest>,
    ) -> Result<Response<RoundAnnouncement>, Status> {
        let name = self.caller(&request, "AwaitRound", &[Role::Participant])?;
        let r = request.get_ref();
        self.federation
            .next_announcement(&name, r.header.as_ref(), r.completed_phase(), LONG_POLL)
            .await
            .map(Response::new)
            .map_err(refuse("AwaitRound", &name))
    }

    async fn download_model(
        &self,
        request: Request<ModelRequest>,
    ) -> Result<Response<GlobalModel>, Status> {
        let name = self.caller(&request, "DownloadModel", &[Role::Participant])?;
        let header = request.get_ref().header.as_ref();
        self.federation
            .model(&name, header)
            .map(Response::new)
            .map_err(refuse("DownloadModel", &name))
    }

    async fn upload_update(
        &self,
        request: Request<UpdateUpload>,
    ) -> Result<Response<UploadReceipt>, Status> {
        let name = self.caller(&request, "UploadUpdate", &[Role::Participant])?;
        let r = request.into_inner();
        let phase = r.phase();
        if !matches!(
            phase,
            Phase::Standardize | Phase::Fit | Phase::EvaluateThresholds
        ) {
            return Err(Status::invalid_argument(format!(
                "UploadUpdate is for the standardize, fit and evaluate-thresholds phases, not {}",
                phase.label()
            )));
        }
        self.federation
            .upload(&name, r.header.as_ref(), phase, r.vector)
            .map(Response::new)
            .map_err(refuse("UploadUpdate", &name))
    }

    async fn upload_evaluation(
        &self,
        request: Request<EvaluationUpload>,
    ) -> Result<Response<UploadReceipt>, Status> {
        let name = self.caller(&request, "UploadEvaluation", &[Role::Participant])?;
        let r = request.into_inner();
        self.federation
            .upload(&name, r.header.as_ref(), Phase::Evaluate, r.vector)
            .map(Response::new)
            .map_err(refuse("UploadEvaluation", &name))
    }

    async fn sec_agg_submit(
        &self,
        request: Request<SignedStageMessage>,
    ) -> Result<Response<UploadReceipt>, Status> {
        let peer = self.peer(&request, "SecAggSubmit", &[Role::Participant])?;
        let (name, certificate) = (peer.identity.name.clone(), peer.certificate.clone());
        // Checking a submission can be heavy (proofs of encrypted statistics take seconds):
        // keep it off the threads that serve other requests.
        let federation = self.federation.clone();
        let message = request.into_inner();
        let checked_name = name.clone();
        tokio::task::spawn_blocking(move || {
            federation.submit_signed(&checked_name, certificate, message)
        })
        .await
        .map_err(|e| Status::internal(format!("submission check failed: {e}")))?
        .map(Response::new)
        .map_err(refuse("SecAggSubmit", &name))
    }

    async fn sec_agg_await(
        &self,
        request: Request<SecAggAwaitRequest>,
    ) -> Result<Response<SecAggRelay>, Status> {
        let name = self.caller(&request, "SecAggAwait", &[Role::Participant])?;
        let r = request.get_ref();
        self.federation
            .stage_relay(
                &name,
                r.header.as_ref(),
                r.phase(),
                r.completed_stage(),
                LONG_POLL,
            )
            .await
            .map(Response::new)
            .map_err(refuse("SecAggAwait", &name))
    }

    /// Open to registered participants (so roster members only, when there is a roster) and
    /// to the auditor certificates listed in `federation.observers`.
    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let peer = self.peer(&request, "Status", &[Role::Participant, Role::Auditor])?;
        let name = &peer.identity.name;
        self.federation
            .status(name, peer.identity.role)
            .map(Response::new)
            .map_err(refuse("Status", name))
    }
}
