//! The federation's driver: waits for registration, then runs the round plan
//! ([`crate::plan::RoundPlan`]) phase by phase, each phase's stages until every expected
//! participant submitted or the stage deadline passed; writes rounds.csv as rounds end and
//! model.json at the end, then runs the fairness audit.

use super::*;

impl Federation {
    /// Opens a phase for the registered participants not excluded and runs its stages, each
    /// until every expected participant submitted or the stage deadline passed. Returns the sum
    /// and who contributed, or the reason the phase aborted; and, either way, the participants
    /// named for deviating (logged; those proven by their own messages are excluded from
    /// every later phase).
    async fn run_phase(&self, round: u32, phase: Phase, vector: PhaseVector) -> PhaseResult {
        let (result, culprits) = self.run_stages(round, phase, vector).await;
        let mut state = self.state();
        for culprit in &culprits {
            warn!(round, phase = phase.label(), participant = %culprit.participant, stage = stage_label(culprit.stage), reason = %culprit.reason, proven = culprit.proven, "participant named for deviating from the protocol");
            if culprit.proven && !state.excluded.contains_key(&culprit.participant) {
                warn!(participant = %culprit.participant, "excluded from the rest of the federation");
                state
                    .excluded
                    .insert(culprit.participant.clone(), culprit.reason.clone());
            }
        }
        PhaseResult {
            sum: result,
            culprits: culprits
                .iter()
                .map(|c| PhaseResult::culprit_line(phase, c))
                .collect(),
        }
    }

    async fn run_stages(
        &self,
        round: u32,
        phase: Phase,
        vector: PhaseVector,
    ) -> (
        Result<(Vec<f64>, BTreeSet<String>), PhaseAbort>,
        Vec<accord_crypto::secagg::Culprit>,
    ) {
        let stage_time = Duration::from_secs(self.config.federation.phase_timeout_secs);
        let task = Task { round, phase };
        {
            let mut state = self.state();
            let selected: BTreeSet<String> = state
                .registered
                .iter()
                .filter(|r| !state.excluded.contains_key(*r))
                .cloned()
                .collect();
            let default_params = accord_proto::v1::SecAggParams::default();
            let spec = PhaseSpec {
                context: Context {
                    federation: self.definition.federation_id.clone(),
                    round,
                    phase,
                },
                vector,
                selected: selected.clone(),
                params: self
                    .definition
                    .secure_aggregation
                    .as_ref()
                    .unwrap_or(&default_params),
                trust: &self.trust,
            };
            let started = match (&self.fairness, phase) {
                (Some(audit), Phase::Fairness) => audit.start(spec),
                _ => aggregation::start(self.config.aggregation(), spec),
            };
            let aggregator = match started {
                Ok(aggregator) => aggregator,
                Err(e) => {
                    state.aborted = Some((task, e.to_string()));
                    return (Err(e.into()), Vec::new());
                }
            };
            state.task = task;
            state.selected = selected;
            state.aggregator = Some(aggregator);
        }
        self.task.send_replace(task);
        loop {
            let deadline = Instant::now() + stage_time;
            self.state().deadline = deadline;
            let complete = self
                .wait_until(deadline, |s| {
                    s.aggregator
                        .as_ref()
                        .is_some_and(|a| a.received().is_superset(&a.expected()))
                })
                .await;
            let mut aggregator = {
                let mut state = self.state();
                let aggregator = state.aggregator.take().expect("phase aggregator");
                // Closing can be heavy (the fairness phase verifies proofs and sums ciphertexts):
                // it runs without the state lock, on a blocking thread, while participants
                // waiting for the next stage keep waiting and late messages are refused.
                state.closing = true;
                aggregator
            };
            let stage = aggregator.stage();
            if !complete {
                let missing: Vec<_> = aggregator
                    .expected()
                    .difference(&aggregator.received())
                    .cloned()
                    .collect();
                warn!(round, phase = phase.label(), stage = stage_label(stage), missing = ?missing, "stage deadline passed without every participant");
            }
            let (aggregator, closed) = tokio::task::spawn_blocking(move || {
                let closed = aggregator.close_stage();
                (aggregator, closed)
            })
            .await
            .expect("closing a stage does not panic");
            let culprits = aggregator.culprits();
            let mut state = self.state();
            state.closing = false;
            state.aggregator = Some(aggregator);
            let result = match closed {
                Ok(Closed::Next) => None,
                Ok(Closed::Done { sum, contributors }) => Some(Ok((sum, contributors))),
                Err(e) => {
                    let reason = e.to_string();
                    warn!(round, phase = phase.label(), %reason, "phase aborted");
                    state.aborted = Some((task, reason));
                    Some(Err(e.into()))
                }
            };
            if result.is_some() {
                state.aggregator = None;
            }
            drop(state);
            // Wake the participants waiting for the next stage (or for the phase's end).
            self.task.send_modify(|_| {});
            if let Some(result) = result {
                return (result, culprits);
            }
        }
    }

    /// Records `error` as the federation's failure (participants asking hear it) and returns it.
    fn fail(&self, error: impl Into<FederationError>) -> FederationError {
        let error = error.into();
        let message = error.to_string();
        warn!(%message, "federation failed");
        let mut state = self.state();
        state.lifecycle = FederationState::Failed;
        state.failure = Some(message);
        drop(state);
        self.task.send_modify(|_| {});
        error
    }

    /// Runs registration and every round, writing rounds.csv as rounds finish and model.json at
    /// the end.
    pub async fn drive(&self) -> Result<Outcome, FederationError> {
        let min = self.definition.min_participants;
        let registration =
            Instant::now() + Duration::from_secs(self.config.federation.registration_timeout_secs);
        let roster: BTreeSet<String> = self.config.federation.roster.iter().cloned().collect();
        if self.config.federation.wait_for_roster && !roster.is_empty() {
            // Give every roster member until the registration deadline; then go on with those
            // who came, if they are enough.
            self.wait_until(registration, |s| s.registered.is_superset(&roster))
                .await;
        }
        if !self
            .wait_until(registration, |s| s.registered.len() as u32 >= min)
            .await
        {
            let registered = self.state().registered.len();
            return Err(self.fail(FederationError::Registration {
                registered,
                min,
                secs: self.config.federation.registration_timeout_secs,
            }));
        }
        self.state().lifecycle = FederationState::Running;
        let rounds_path = self.config.out_dir.join("rounds.csv");
        let attributes = self.gap_attributes();
        loop {
            let request = self.state().plan.configure();
            let Some(request) = request.map_err(|e| self.fail(e))? else {
                break;
            };
            let started = Instant::now();
            let (up, down) = (self.meter.received(), self.meter.sent());
            let result = self
                .run_phase(request.round, request.phase, request.vector)
                .await;
            let mut state = self.state();
            let closed = match state.plan.aggregate(result) {
                Ok(closed) => closed,
                Err(e) => {
                    drop(state);
                    return Err(self.fail(e));
                }
            };
            if matches!(request.phase, Phase::Fit | Phase::Evaluate) {
                state.plan.add_transport(
                    request.round,
                    self.meter.received() - up,
                    self.meter.sent() - down,
                    started.elapsed().as_secs_f64(),
                );
            }
            if closed.is_some() {
                write_rounds_csv(&rounds_path, state.plan.history(), &attributes)?;
            }
        }

        let model = self.artefact();
        let model_path = self.config.out_dir.join("model.json");
        model.write(&model_path)?;
        if let Some(audit) = &self.fairness {
            let round = self.definition.rounds;
            let empty = PhaseVector {
                bounds: Vec::new(),
                relations: Vec::new(),
            };
            let audited = self.run_phase(round, Phase::Fairness, empty).await;
            audit.name_culprits(&audited.culprits);
            match audited.sum {
                Ok(_) => {
                    let written = audit
                        .write_outcome(&self.definition, round, &model, &self.config.out_dir)
                        .map_err(|e| self.fail(e))?;
                    info!(aggregate = %written.display(), "encrypted fairness aggregate written for the auditor");
                }
                Err(reason) => {
                    warn!(%reason, "the fairness phase aborted: no aggregate for the auditor")
                }
            }
        }
        let (rounds, thresholded) = {
            let mut state = self.state();
            state.lifecycle = FederationState::Finished;
            state.task = Task {
                round: self.definition.rounds,
                phase: Phase::Finished,
            };
            state.selected.clear();
            (
                state.plan.history().to_vec(),
                state.plan.thresholded().cloned(),
            )
        };
        self.task.send_replace(Task {
            round: self.definition.rounds,
            phase: Phase::Finished,
        });
        info!(path = %model_path.display(), "federation finished; model written");
        Ok(Outcome {
            rounds,
            thresholded,
            model_path,
            rounds_path,
            model,
        })
    }

    /// Waits (up to `grace`) until every registered participant has been told the federation is over.
    pub async fn await_farewells(&self, grace: Duration) {
        self.wait_until(Instant::now() + grace, |s| {
            s.told_finished.is_superset(&s.registered)
        })
        .await;
    }

    /// The protected attributes whose gaps rounds.csv reports (`[evaluation] group_gaps`).
    fn gap_attributes(&self) -> Vec<String> {
        let reported = self.definition.evaluation.is_some_and(|e| e.group_gaps);
        (self.definition.schema.iter())
            .flat_map(|s| &s.protected_attributes)
            .filter(|_| reported)
            .map(|a| a.name.clone())
            .collect()
    }

    fn artefact(&self) -> ModelArtefact {
        let state = self.state();
        let plan = &state.plan;
        let (weights, intercept) = plan.model().cloned().unwrap_or_default();
        let standardization = plan.standardization().cloned().unwrap_or_default();
        ModelArtefact {
            format: MODEL_FORMAT.into(),
            federation_id: self.definition.federation_id.clone(),
            schema: self.config.schema.clone(),
            columns: self.columns.clone(),
            standardization: StandardizationJson {
                count: standardization.count,
                means: standardization.means,
                std_devs: standardization.std_devs,
            },
            weights,
            intercept,
            rounds: self.definition.rounds,
            rounds_completed: plan.history().iter().filter(|r| !r.fit_aborted).count() as u32,
            // Those whose fit uploads made the model written: the last round whose fit
            // completed (not everyone who registered).
            participants: plan
                .history()
                .iter()
                .rev()
                .find(|r| !r.fit_aborted)
                .map_or(0, |r| r.participants),
            aggregation: self.definition.aggregation.clone(),
            training: self.config.training.clone(),
            evaluation: self.config.evaluation.clone(),
            quality: plan.quality(),
            postprocessing: plan.postprocessing().cloned(),
            content_hash: String::new(),
        }
        .seal()
    }
}
