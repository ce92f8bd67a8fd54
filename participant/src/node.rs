//! The participant's side of a federation: register, then follow the coordinator's rounds.
//!
//! Every upload is a vector of sums over local records (standardization sums, a sample-weighted
//! model, evaluation counts), passed through the federation's aggregation scheme before it
//! leaves. The schema arrives from the coordinator and is checked before any data is read.

use crate::config::ParticipantConfig;
use crate::data::{DataError, LoadReport, LocalDataset, load_csv};
use crate::model::{LogisticModel, Standardizer, TrainingParams, standardization_sums};
use accord_proto::MAX_MESSAGE_BYTES;
use accord_proto::layout::encoded_columns;
use accord_proto::transport::{WireMeter, channel};
use accord_proto::v1::federation_client::FederationClient;
use accord_proto::v1::{
    AwaitRoundRequest, EvaluationUpload, FederationDefinition, GlobalModel, Header, ModelRequest,
    Phase, PlainVector, ProtectedVector, RegisterRequest, UpdateUpload, protected_vector,
};
use ndarray::{Array1, Array2};
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tracing::{info, warn};

/// The aggregation scheme this node can take part in.
pub const INSECURE_PLAIN: &str = "insecure-plain";

#[derive(Debug, thiserror::Error)]
pub enum ParticipantError {
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("transport: {0}")]
    Transport(#[from] accord_proto::transport::TransportError),
    #[error("the coordinator refused {rpc}: {message} ({code:?})")]
    Refused {
        rpc: &'static str,
        code: Code,
        message: String,
    },
    #[error("the coordinator sent an invalid federation definition: {0}")]
    InvalidDefinition(String),
    #[error(
        "the federation uses aggregation '{0}', which reveals this participant's own sums to the coordinator; \
         set allow_insecure_plain = true in participant.toml to consent"
    )]
    PlainNotAllowed(String),
    #[error("the federation uses aggregation '{0}', which this participant does not support")]
    UnsupportedAggregation(String),
    #[error("the coordinator sent a model with {actual} weights, expected {expected}")]
    ModelShape { expected: usize, actual: usize },
    #[error(transparent)]
    Data(#[from] DataError),
}

/// What a finished participation looked like, for the local log.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub load: LoadReport,
    pub rows_used: usize,
    pub rounds_completed: u32,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// Runs this participant until the federation finishes.
pub async fn run(
    config: &ParticipantConfig,
    meter: WireMeter,
) -> Result<Outcome, ParticipantError> {
    let tls =
        accord_crypto::tls::client_config(&config.tls.ca, &config.tls.certificate, &config.tls.key)
            .map_err(|e| ParticipantError::Tls(e.to_string()))?;
    let channel = channel(
        &config.coordinator,
        &config.server_name(),
        tls,
        meter.clone(),
    )?;
    let mut node = Node::register(config, channel).await?;
    let rounds_completed = node.follow_rounds().await?;
    Ok(Outcome {
        name: node.name,
        load: node.load,
        rows_used: node.data.len(),
        rounds_completed,
        bytes_sent: meter.sent(),
        bytes_received: meter.received(),
    })
}

struct Node {
    client: FederationClient<Channel>,
    name: String,
    federation: FederationDefinition,
    seed: u64,
    data: LocalDataset,
    load: LoadReport,
    standardized: Option<(Standardizer, Array2<f64>)>,
}

fn refused(rpc: &'static str) -> impl FnOnce(Status) -> ParticipantError {
    move |status| ParticipantError::Refused {
        rpc,
        code: status.code(),
        message: describe_status(&status),
    }
}

/// The status message, or for a failed connection the TLS reason under it (e.g. the
/// coordinator rejected this participant's certificate), which gRPC reports only as
/// "transport error".
pub fn describe_status(status: &Status) -> String {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return format!(
                "{}: {}",
                status.message(),
                accord_crypto::tls::describe_handshake_error(io)
            );
        }
        source = error.source();
    }
    status.message().to_owned()
}

fn plain(values: Vec<f64>) -> Option<ProtectedVector> {
    Some(ProtectedVector {
        scheme: Some(protected_vector::Scheme::Plain(PlainVector { values })),
    })
}

impl Node {
    async fn register(
        config: &ParticipantConfig,
        channel: Channel,
    ) -> Result<Self, ParticipantError> {
        let client = FederationClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let request = RegisterRequest {
            header: Some(Header::new(&config.federation_id, 0)),
        };
        let response = retry_unavailable(|| {
            let mut client = client.clone();
            let request = request.clone();
            async move { client.register(request).await }
        })
        .await
        .map_err(refused("Register"))?
        .into_inner();
        let federation = response.federation.ok_or_else(|| {
            ParticipantError::InvalidDefinition("no federation definition".into())
        })?;
        let schema = federation
            .schema
            .as_ref()
            .ok_or_else(|| ParticipantError::InvalidDefinition("no schema".into()))?;
        accord_proto::schema::validate(schema)
            .map_err(|e| ParticipantError::InvalidDefinition(e.to_string()))?;
        if federation.aggregation == INSECURE_PLAIN {
            if !config.allow_insecure_plain {
                return Err(ParticipantError::PlainNotAllowed(
                    federation.aggregation.clone(),
                ));
            }
        } else {
            return Err(ParticipantError::UnsupportedAggregation(
                federation.aggregation.clone(),
            ));
        }
        info!(name = %response.participant_name, federation = %federation.federation_id, "registered");

        let (data, load) = load_csv(
            &config.data.path,
            schema,
            &config.data.columns,
            config.data.invalid_rows,
        )?;
        info!(
            rows = data.len(),
            skipped = load.rows_skipped,
            path = %config.data.path.display(),
            "loaded local data (the skipped count stays here)"
        );
        if load.rows_skipped > 0 {
            for (column, count) in &load.skipped_by_column {
                warn!(column = %column, rows = count, "skipped rows with a missing or invalid value");
            }
        }
        Ok(Self {
            client,
            name: response.participant_name,
            federation,
            seed: config.seed,
            data,
            load,
            standardized: None,
        })
    }

    fn header(&self, round: u32) -> Option<Header> {
        Some(Header::new(&self.federation.federation_id, round))
    }

    async fn follow_rounds(&mut self) -> Result<u32, ParticipantError> {
        let (mut round, mut completed) = (0u32, Phase::Unspecified);
        let mut rounds_completed = 0;
        loop {
            let request = AwaitRoundRequest {
                header: self.header(round),
                completed_phase: completed as i32,
            };
            let announcement = retry_unavailable(|| {
                let mut client = self.client.clone();
                let request = request.clone();
                async move { client.await_round(request).await }
            })
            .await
            .map_err(refused("AwaitRound"))?
            .into_inner();
            if announcement.pending {
                continue;
            }
            let phase = announcement.phase();
            let next_round = announcement.header.as_ref().map_or(0, |h| h.round);
            if phase == Phase::Finished {
                info!(rounds = rounds_completed, "federation finished");
                return Ok(rounds_completed);
            }
            if announcement.selected {
                match phase {
                    Phase::Standardize => self.standardize(next_round).await?,
                    Phase::Fit => self.fit(next_round).await?,
                    Phase::Evaluate => {
                        self.evaluate(next_round).await?;
                        rounds_completed += 1;
                    }
                    Phase::Unspecified | Phase::Finished => {}
                }
            } else {
                info!(
                    round = next_round,
                    phase = phase.label(),
                    "not selected for this phase"
                );
            }
            (round, completed) = (next_round, phase);
        }
    }

    async fn standardize(&mut self, round: u32) -> Result<(), ParticipantError> {
        let sums = standardization_sums(&self.data.features);
        self.upload(round, Phase::Standardize, sums.to_vec()).await
    }

    async fn download(
        &mut self,
        round: u32,
    ) -> Result<(LogisticModel, Array2<f64>), ParticipantError> {
        let model: GlobalModel = self
            .client
            .download_model(ModelRequest {
                header: self.header(round),
            })
            .await
            .map_err(refused("DownloadModel"))?
            .into_inner();
        let columns = self.data.features.ncols();
        let standardization = model.standardization.unwrap_or_default();
        for actual in [
            model.weights.len(),
            standardization.means.len(),
            standardization.std_devs.len(),
        ] {
            if actual != columns {
                return Err(ParticipantError::ModelShape {
                    expected: columns,
                    actual,
                });
            }
        }
        if let Some(schema) = &self.federation.schema {
            let expected = encoded_columns(schema);
            if model.columns != expected {
                return Err(ParticipantError::InvalidDefinition(
                    "the model's columns differ from the schema's".into(),
                ));
            }
        }
        let standardizer = Standardizer {
            means: Array1::from(standardization.means),
            std_devs: Array1::from(standardization.std_devs),
        };
        if standardizer
            .std_devs
            .iter()
            .any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(ParticipantError::InvalidDefinition(
                "a standard deviation is not positive".into(),
            ));
        }
        let stale = self
            .standardized
            .as_ref()
            .is_none_or(|(s, _)| *s != standardizer);
        if stale {
            let x = standardizer.apply(&self.data.features);
            self.standardized = Some((standardizer, x));
        }
        let x = self
            .standardized
            .as_ref()
            .map(|(_, x)| x.clone())
            .expect("just set");
        Ok((
            LogisticModel {
                weights: Array1::from(model.weights),
                intercept: model.intercept,
            },
            x,
        ))
    }

    async fn fit(&mut self, round: u32) -> Result<(), ParticipantError> {
        let (global, x) = self.download(round).await?;
        let t = self.federation.training.unwrap_or_default();
        let params = TrainingParams {
            epochs: t.local_epochs,
            learning_rate: t.learning_rate,
            l2: t.l2,
            batch_size: t.batch_size as usize,
            proximal_mu: t.fedprox_mu,
        };
        let seed = self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(round);
        let local = global.train(x.view(), self.data.labels.view(), &params, seed);
        self.upload(round, Phase::Fit, local.weighted(self.data.len()).to_vec())
            .await
    }

    async fn evaluate(&mut self, round: u32) -> Result<(), ParticipantError> {
        let (global, x) = self.download(round).await?;
        let e = self.federation.evaluation.unwrap_or_default();
        let counts = global.evaluate(
            x.view(),
            self.data.labels.view(),
            e.histogram_bins as usize,
            e.decision_threshold,
        );
        let request = EvaluationUpload {
            header: self.header(round),
            vector: plain(counts.to_vec()),
        };
        self.client
            .upload_evaluation(request)
            .await
            .map_err(refused("UploadEvaluation"))?;
        Ok(())
    }

    async fn upload(
        &mut self,
        round: u32,
        phase: Phase,
        values: Vec<f64>,
    ) -> Result<(), ParticipantError> {
        let request = UpdateUpload {
            header: self.header(round),
            phase: phase as i32,
            vector: plain(values),
        };
        let receipt = self
            .client
            .upload_update(request)
            .await
            .map_err(refused("UploadUpdate"))?
            .into_inner();
        info!(
            round,
            phase = phase.label(),
            received = receipt.received,
            expected = receipt.expected,
            "uploaded"
        );
        Ok(())
    }
}

/// Retries a call while the coordinator is unreachable (it may still be starting), for up to a minute.
async fn retry_unavailable<T, F, Fut>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let mut wait = Duration::from_millis(100);
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match call().await {
            Err(status)
                if status.code() == Code::Unavailable && tokio::time::Instant::now() < give_up =>
            {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}
