//! The `accord.v1.Federation` gRPC service: checks who is calling (from the mutual-TLS
//! certificate, never from a request field) and hands each request to the [`Federation`].

use crate::federation::{Federation, Refusal};
use crate::server::Peer;
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

pub struct FederationService {
    federation: Arc<Federation>,
}

impl FederationService {
    pub fn new(federation: Arc<Federation>) -> Self {
        Self { federation }
    }
}

/// The authenticated caller, required to hold one of `roles`.
fn caller<T>(request: &Request<T>, rpc: &str, roles: &[Role]) -> Result<String, Status> {
    Ok(peer(request, rpc, roles)?.identity.name.clone())
}

fn peer<'a, T>(request: &'a Request<T>, rpc: &str, roles: &[Role]) -> Result<&'a Peer, Status> {
    let peer = request.extensions().get::<Peer>().ok_or_else(|| {
        Status::unauthenticated("no authenticated client certificate on this connection")
    })?;
    if !roles.contains(&peer.identity.role) {
        warn!(name = %peer.identity.name, role = %peer.identity.role, rpc, "refused: wrong role");
        return Err(Status::permission_denied(format!(
            "{rpc} is not open to '{}' with role {}",
            peer.identity.name, peer.identity.role
        )));
    }
    Ok(peer)
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
            Refusal::NotRegistered(_) | Refusal::NotOnRoster(_) | Refusal::NotSelected(_) => {
                Status::permission_denied(message)
            }
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
        let name = caller(&request, "Register", &[Role::Participant])?;
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
        let name = caller(&request, "AwaitRound", &[Role::Participant])?;
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
        let name = caller(&request, "DownloadModel", &[Role::Participant])?;
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
        let name = caller(&request, "UploadUpdate", &[Role::Participant])?;
        let r = request.into_inner();
        let phase = r.phase();
        if !matches!(phase, Phase::Standardize | Phase::Fit) {
            return Err(Status::invalid_argument(format!(
                "UploadUpdate is for the standardize and fit phases, not {}",
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
        let name = caller(&request, "UploadEvaluation", &[Role::Participant])?;
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
        let peer = peer(&request, "SecAggSubmit", &[Role::Participant])?;
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
        let name = caller(&request, "SecAggAwait", &[Role::Participant])?;
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

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        caller(
            &request,
            "Status",
            &[Role::Participant, Role::Auditor, Role::Coordinator],
        )?;
        Ok(Response::new(self.federation.status()))
    }
}
