//! The node's handling of what the coordinator sends, without a network: a scripted coordinator
//! (the real [`RoundPlan`] behind the gRPC service, served over in-memory streams) that may
//! alter what it hands out, and the real node following it.

use super::*;
use accord_coordinator::{CoordinatorConfig, PhaseResult, RoundPlan};
use accord_proto::layout::encoded_columns;
use accord_proto::v1::federation_server::{Federation, FederationServer};
use accord_proto::v1::{
    RegisterResponse, RoundAnnouncement, StatusRequest, StatusResponse, UploadReceipt,
};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;
use tonic::{Request, Response, Status};

const COORDINATOR_EXAMPLE: &str = include_str!("../../../examples/coordinator.toml");
const NAME: &str = "org-1";

/// How the coordinator alters the model it hands out for one (round, phase).
type Alteration = Box<dyn Fn(u32, Phase, &mut GlobalModel) + Send + Sync>;

/// What the scripted coordinator saw.
#[derive(Debug, Default, Clone, PartialEq)]
struct Seen {
    /// The (round, phase) of every contribution the participant uploaded.
    uploads: Vec<(u32, Phase)>,
    /// The (round, phase) the participant was asked to contribute to.
    announced: Vec<(u32, Phase)>,
}

struct Script {
    definition: FederationDefinition,
    plan: RoundPlan,
    /// The phase open now, its vector's length, and the participant's contribution to it once
    /// uploaded.
    open: Option<(u32, Phase, usize, Option<Vec<f64>>)>,
    finished: bool,
    seen: Seen,
}

/// A coordinator that runs the real round plan for one participant, summing its contribution
/// alone, and alters the global model where `alter` says.
struct ScriptedCoordinator {
    script: Mutex<Script>,
    alter: Alteration,
}

impl ScriptedCoordinator {
    fn header(&self, round: u32) -> Option<Header> {
        let script = self.script.lock().unwrap();
        Some(Header::new(&script.definition.federation_id, round))
    }

    /// Closes the open phase with the contribution received: as a plain aggregation does, a
    /// sum of nothing (zeros, no contributor) when the participant sat it out.
    fn close(script: &mut Script) {
        let Some((_, _, len, contribution)) = script.open.take() else {
            return;
        };
        let sum = Ok(match contribution {
            Some(values) => (values, BTreeSet::from([NAME.to_owned()])),
            None => (vec![0.0; len], BTreeSet::new()),
        });
        script
            .plan
            .aggregate(PhaseResult {
                sum,
                culprits: Vec::new(),
            })
            .expect("the plan takes the phase's result");
    }

    fn upload(&self, phase: Phase, values: Vec<f64>) -> Result<Response<UploadReceipt>, Status> {
        let mut script = self.script.lock().unwrap();
        let Some((round, open, _, contribution)) = script.open.as_mut() else {
            return Err(Status::failed_precondition("no phase is open"));
        };
        assert_eq!(*open, phase, "an upload for the phase that is open");
        *contribution = Some(values);
        let round = *round;
        script.seen.uploads.push((round, phase));
        Ok(Response::new(UploadReceipt {
            header: None,
            received: 1,
            expected: 1,
        }))
    }
}

fn plain_values(vector: Option<ProtectedVector>) -> Vec<f64> {
    match vector.and_then(|v| v.scheme) {
        Some(protected_vector::Scheme::Plain(plain)) => plain.values,
        other => panic!("a plain vector, got {other:?}"),
    }
}

#[tonic::async_trait]
impl Federation for ScriptedCoordinator {
    async fn register(
        &self,
        _: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let script = self.script.lock().unwrap();
        Ok(Response::new(RegisterResponse {
            federation: Some(script.definition.clone()),
            participant_name: NAME.into(),
            session: 1,
            replaced: false,
        }))
    }

    async fn await_round(
        &self,
        request: Request<AwaitRoundRequest>,
    ) -> Result<Response<RoundAnnouncement>, Status> {
        let request = request.into_inner();
        let mut script = self.script.lock().unwrap();
        let reported = request.header.map_or(0, |h| h.round);
        if script.open.as_ref().is_some_and(|(round, phase, _, _)| {
            *round == reported && *phase as i32 == request.completed_phase
        }) {
            Self::close(&mut script);
        }
        if script.open.is_none() && !script.finished {
            match script.plan.configure().expect("the plan configures") {
                Some(next) => {
                    script.seen.announced.push((next.round, next.phase));
                    script.open = Some((next.round, next.phase, next.vector.len(), None));
                }
                None => script.finished = true,
            }
        }
        let (round, phase) = match &script.open {
            Some((round, phase, _, _)) => (*round, *phase),
            None => (script.plan.history().len() as u32, Phase::Finished),
        };
        drop(script);
        Ok(Response::new(RoundAnnouncement {
            header: self.header(round),
            phase: phase as i32,
            selected: true,
            deadline_ms: 0,
            pending: false,
        }))
    }

    async fn download_model(
        &self,
        request: Request<ModelRequest>,
    ) -> Result<Response<GlobalModel>, Status> {
        let round = request.into_inner().header.map_or(0, |h| h.round);
        let script = self.script.lock().unwrap();
        let phase = script.open.as_ref().map_or(Phase::Finished, |o| o.1);
        let mut model = script
            .plan
            .global_model(round)
            .ok_or_else(|| Status::failed_precondition("no model yet"))?;
        (self.alter)(round, phase, &mut model);
        Ok(Response::new(model))
    }

    async fn upload_update(
        &self,
        request: Request<UpdateUpload>,
    ) -> Result<Response<UploadReceipt>, Status> {
        let upload = request.into_inner();
        self.upload(upload.phase(), plain_values(upload.vector))
    }

    async fn upload_evaluation(
        &self,
        request: Request<EvaluationUpload>,
    ) -> Result<Response<UploadReceipt>, Status> {
        self.upload(Phase::Evaluate, plain_values(request.into_inner().vector))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }

    async fn sec_agg_submit(
        &self,
        _: Request<SignedStageMessage>,
    ) -> Result<Response<UploadReceipt>, Status> {
        Err(Status::unimplemented("a plain federation"))
    }

    async fn sec_agg_await(
        &self,
        _: Request<SecAggAwaitRequest>,
    ) -> Result<Response<SecAggRelay>, Status> {
        Err(Status::unimplemented("a plain federation"))
    }
}

/// A channel to `coordinator` over in-memory streams: each connection the channel makes is a
/// new duplex pair whose other end the server serves.
fn in_memory(coordinator: Arc<ScriptedCoordinator>) -> Channel {
    let (connections, incoming) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(FederationServer::from_arc(coordinator))
            .serve_with_incoming(tokio_stream::wrappers::UnboundedReceiverStream::new(
                incoming,
            )),
    );
    let connect = tower::service_fn(move |_: tonic::transport::Uri| {
        let (client, server) = tokio::io::duplex(1 << 20);
        let sent = connections.send(Ok::<_, std::io::Error>(server));
        async move {
            sent.map_err(|_| std::io::Error::other("the scripted coordinator stopped"))?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(client))
        }
    });
    tonic::transport::Endpoint::from_static("http://scripted.coordinator")
        .connect_with_connector_lazy(connect)
}

/// A plain federation of two rounds with per-group thresholds (so it ends with the evaluation
/// under thresholds), and one participant's config and CSV (40 records) in `dir`.
fn federation(dir: &Path) -> (FederationDefinition, RoundPlan, ParticipantConfig) {
    let text = COORDINATOR_EXAMPLE
        .replace("\nrounds = 10", "\nrounds = 2")
        .replace("\nmin_participants = 3", "\nmin_participants = 1")
        .replace(
            "\naggregation = \"secagg\"",
            "\naggregation = \"insecure-plain\"",
        )
        + "\n[postprocessing]\nthresholds = \"equal_opportunity\"\nattribute = \"age_band\"\n";
    let config = CoordinatorConfig::parse(&text, Path::new("coordinator.toml")).unwrap();
    let definition = accord_coordinator::definition(&config, None);
    let schema = definition.schema.clone().unwrap();
    let plan = RoundPlan::new(
        definition.clone(),
        encoded_columns(&schema),
        config.secure_aggregation.params(),
    );

    // Every schema column, with values inside their bounds that vary by record.
    let label = schema.label.clone().unwrap().column;
    let mut header: Vec<String> = schema.features.iter().map(|f| f.name.clone()).collect();
    header.extend(schema.protected_attributes.iter().map(|a| a.name.clone()));
    header.push(label);
    let mut csv = header.join(",") + "\n";
    for r in 0..40usize {
        let mut row: Vec<String> = schema
            .features
            .iter()
            .map(|f| match f.kind.as_ref().unwrap() {
                accord_proto::v1::feature::Kind::Numeric(n) => {
                    let (min, max) = (n.min.unwrap(), n.max.unwrap());
                    (min + (max - min) * ((r * 7 % 10) as f64 / 10.0)).to_string()
                }
                accord_proto::v1::feature::Kind::Boolean(_) => (r % 2 == 0).to_string(),
                accord_proto::v1::feature::Kind::Categorical(c) => {
                    c.categories[r % c.categories.len()].clone()
                }
            })
            .collect();
        row.extend(
            schema
                .protected_attributes
                .iter()
                .map(|a| a.categories[r % a.categories.len()].clone()),
        );
        row.push((1 + (r * 3 + r / 5) % 5).to_string());
        csv += &(row.join(",") + "\n");
    }
    std::fs::write(dir.join("org-1.csv"), csv).unwrap();
    let participant = format!(
        "coordinator = \"scripted.coordinator:1\"\nfederation_id = \"{}\"\nseed = 3\n\
         allow_insecure_plain = true\n\n[tls]\nca = \"ca.pem\"\ncertificate = \"org-1.pem\"\n\
         key = \"org-1.key\"\n\n[data]\npath = \"org-1.csv\"\n",
        definition.federation_id
    );
    std::fs::write(dir.join("participant.toml"), participant).unwrap();
    let config = ParticipantConfig::load(&dir.join("participant.toml")).unwrap();
    (definition, plan, config)
}

/// Runs the node against the scripted coordinator to the federation's end.
async fn follow(alter: Alteration) -> (Result<u32, ParticipantError>, Seen, Option<Vec<f64>>) {
    let dir = tempfile::tempdir().unwrap();
    let (definition, plan, config) = federation(dir.path());
    let coordinator = Arc::new(ScriptedCoordinator {
        script: Mutex::new(Script {
            definition,
            plan,
            open: None,
            finished: false,
            seen: Seen::default(),
        }),
        alter,
    });
    let channel = in_memory(coordinator.clone());
    let mut node = Node::register(&config, channel, None, Box::new(()))
        .await
        .unwrap();
    let followed = node.follow_rounds().await;
    let script = coordinator.script.lock().unwrap();
    let weights = script.plan.model().map(|(weights, _)| weights.clone());
    (followed, script.seen.clone(), weights)
}

/// The evaluation vector's last value is the record count; every phase of the honest run.
const PHASES: [(u32, Phase); 6] = [
    (0, Phase::Standardize),
    (1, Phase::Fit),
    (1, Phase::Evaluate),
    (2, Phase::Fit),
    (2, Phase::Evaluate),
    (2, Phase::EvaluateThresholds),
];

#[tokio::test]
async fn an_honest_coordinator_gets_a_contribution_to_every_phase() {
    let (followed, seen, weights) = follow(Box::new(|_, _, _| {})).await;
    assert_eq!(followed.unwrap(), 2, "both rounds completed");
    assert_eq!(seen.announced, PHASES);
    assert_eq!(seen.uploads, PHASES);
    assert!(
        weights.unwrap().iter().any(|w| *w != 0.0),
        "a trained model"
    );
}

/// A coordinator that alters the model it hands out for one phase (a NaN standard deviation
/// in round 2's fit, too few per-group thresholds in the evaluation under thresholds): the node
/// refuses that model, naming what is wrong, sits that phase out and goes on with the next;
/// it never exits because of what the coordinator sent.
#[tokio::test]
async fn a_node_sits_out_a_phase_whose_model_the_coordinator_altered_and_goes_on() {
    let (followed, seen, _) = follow(Box::new(|round, phase, model| {
        if (round, phase) == (2, Phase::Fit) {
            model.standardization.as_mut().unwrap().std_devs[0] = f64::NAN;
        }
    }))
    .await;
    assert_eq!(
        followed.unwrap(),
        1,
        "round 1 completed, round 2's fit sat out"
    );
    // Without its only contribution round 2's fit aborted, so round 2 was not evaluated; the
    // thresholds were still measured on round 1's model, which stayed in force.
    let without = |left_out: &[(u32, Phase)]| -> Vec<_> {
        PHASES
            .into_iter()
            .filter(|p| !left_out.contains(p))
            .collect()
    };
    assert_eq!(seen.announced, without(&[(2, Phase::Evaluate)]));
    assert_eq!(
        seen.uploads,
        without(&[(2, Phase::Fit), (2, Phase::Evaluate)])
    );

    let (followed, seen, _) = follow(Box::new(|_, phase, model| {
        if phase == Phase::EvaluateThresholds {
            model.feedback.as_mut().unwrap().thresholds.truncate(1);
        }
    }))
    .await;
    assert_eq!(followed.unwrap(), 2);
    assert_eq!(seen.uploads, PHASES[..5]);
}
