//! The federation's side of every RPC: registration, round announcements, the global model,
//! uploads, signed secure-aggregation messages, stage relays and status. Each checks the
//! caller's header, session and selection against the state and refuses with a [`Refusal`].

use super::*;

impl Federation {
    /// Registers the participant named by its certificate.
    pub fn register(
        &self,
        name: &str,
        header: Option<&Header>,
    ) -> Result<RegisterResponse, Refusal> {
        let round = self.check_header(header)?;
        self.check_roster(name)?;
        let mut state = self.state();
        if round != 0 {
            return Err(Self::wrong_round(&state, round, Phase::Unspecified));
        }
        match state.lifecycle {
            FederationState::Finished => return Err(Refusal::Closed("finished")),
            FederationState::Failed => {
                return Err(Refusal::Failed(state.failure.clone().unwrap_or_default()));
            }
            _ => {}
        }
        // A new session per registration (a number, not a secret: the caller is authenticated
        // by its certificate): a later registration of the same name replaces this one, and
        // the earlier session's next request is refused (Refusal::Replaced).
        let session = state.sessions.values().max().map_or(1, |last| last + 1);
        let replaced = state.sessions.insert(name.to_owned(), session).is_some();
        state.registered.insert(name.to_owned());
        if replaced {
            warn!(
                participant = name,
                "participant registered again (a restart, or a second process holding the same certificate): the earlier session is replaced and will be refused"
            );
        } else {
            info!(
                participant = name,
                registered = state.registered.len(),
                "participant registered"
            );
        }
        drop(state);
        self.activity.notify_waiters();
        if replaced {
            // Wake the long polls, so a replaced session hears it now rather than at its next
            // request.
            self.task.send_modify(|_| {});
        }
        Ok(RegisterResponse {
            federation: Some(self.definition.clone()),
            participant_name: name.to_owned(),
            session,
            replaced,
        })
    }

    /// The next task for a participant that completed `completed` of round `header.round`, or
    /// None if there is none yet.
    fn announcement(
        &self,
        name: &str,
        header: Option<&Header>,
        completed: Phase,
    ) -> Result<Option<RoundAnnouncement>, Refusal> {
        let round = self.check_header(header)?;
        let mut state = self.state();
        Self::check_registered(&state, name, Self::session(header))?;
        if let Some(failure) = &state.failure {
            return Err(Refusal::Failed(failure.clone()));
        }
        if round > state.task.round {
            return Err(Self::wrong_round(&state, round, completed));
        }
        let current = state.task;
        if current.order() <= (round, rank(completed)) || current.phase == Phase::Unspecified {
            return Ok(None);
        }
        // With post-processing a participant is done once it has downloaded the final
        // thresholds (see `model`).
        if current.phase == Phase::Finished && self.definition.postprocessing.is_none() {
            state.told_finished.insert(name.to_owned());
            self.activity.notify_waiters();
        }
        // A participant joins a phase at its first stage, once.
        let selected = state.selected.contains(name)
            && state.aggregator.as_ref().is_some_and(|a| {
                matches!(a.stage(), SecAggStage::Unspecified | SecAggStage::Setup)
                    && !a.received().contains(name)
            });
        let left = state.deadline.saturating_duration_since(Instant::now());
        Ok(Some(RoundAnnouncement {
            header: Some(Header::new(&self.definition.federation_id, current.round)),
            phase: current.phase as i32,
            selected,
            deadline_ms: left.as_millis() as u64,
            pending: false,
        }))
    }

    /// Long poll: the caller's next task, or a pending announcement after `timeout`.
    pub async fn next_announcement(
        &self,
        name: &str,
        header: Option<&Header>,
        completed: Phase,
        timeout: Duration,
    ) -> Result<RoundAnnouncement, Refusal> {
        let give_up = Instant::now() + timeout;
        let mut changes = self.task.subscribe();
        loop {
            changes.borrow_and_update();
            if let Some(announcement) = self.announcement(name, header, completed)? {
                return Ok(announcement);
            }
            if tokio::time::timeout_at(give_up, changes.changed())
                .await
                .is_err()
            {
                return Ok(RoundAnnouncement {
                    header: header.cloned(),
                    pending: true,
                    ..Default::default()
                });
            }
        }
    }

    /// The global model for the current fit or evaluate phase.
    pub fn model(&self, name: &str, header: Option<&Header>) -> Result<GlobalModel, Refusal> {
        let round = self.check_header(header)?;
        let mut state = self.state();
        Self::check_registered(&state, name, Self::session(header))?;
        if round != state.task.round {
            return Err(Self::wrong_round(&state, round, Phase::Unspecified));
        }
        if state.task.phase == Phase::Finished {
            state.told_finished.insert(name.to_owned());
            self.activity.notify_waiters();
        }
        state
            .plan
            .global_model(round)
            .ok_or_else(|| Refusal::NoModel(state.task.round, state.task.phase.label()))
    }

    /// Takes a participant's protected vector for the current phase (insecure-plain).
    pub fn upload(
        &self,
        name: &str,
        header: Option<&Header>,
        phase: Phase,
        vector: Option<ProtectedVector>,
    ) -> Result<UploadReceipt, Refusal> {
        self.submit(
            name,
            header,
            Self::session(header),
            phase,
            Submission::Plain(vector.unwrap_or_default()),
        )
    }

    /// Takes a participant's signed secure-aggregation message for the current stage.
    pub fn submit_signed(
        &self,
        name: &str,
        certificate_der: std::sync::Arc<Vec<u8>>,
        message: SignedStageMessage,
    ) -> Result<UploadReceipt, Refusal> {
        let header = message.header.clone();
        let phase = message.phase();
        // A signed stage message is bound to its sender's identity key and to its round, phase
        // and stage (its header is signed, so it carries no session): it is the participant's
        // own whichever process sent it. A replaced process learns so at its next await.
        self.submit(
            name,
            header.as_ref(),
            None,
            phase,
            Submission::Signed {
                certificate_der,
                message,
            },
        )
    }

    fn submit(
        &self,
        name: &str,
        header: Option<&Header>,
        session: Option<u64>,
        phase: Phase,
        submission: Submission,
    ) -> Result<UploadReceipt, Refusal> {
        let round = self.check_header(header)?;
        let mut state = self.state();
        Self::check_registered(&state, name, session)?;
        if round != state.task.round || phase != state.task.phase {
            return Err(Self::wrong_round(&state, round, phase));
        }
        if !state.selected.contains(name) {
            return Err(Refusal::NotSelected(name.to_owned()));
        }
        let aggregator = state
            .aggregator
            .as_mut()
            .ok_or(Refusal::Closed("phase closed"))?;
        aggregator
            .accept(name, submission)
            .map_err(Refusal::Aggregation)?;
        let received = aggregator.received().len() as u32;
        let expected = aggregator.expected().len() as u32;
        drop(state);
        self.activity.notify_waiters();
        Ok(UploadReceipt {
            header: Some(Header::new(&self.definition.federation_id, round)),
            received,
            expected,
        })
    }

    /// The federation's state and history, for a registered participant `name` (so one on the
    /// roster, if there is one) or an observer (`federation.observers`).
    pub fn status(&self, name: &str, role: Role) -> Result<StatusResponse, Refusal> {
        if role == Role::Participant {
            self.check_roster(name)?;
        } else if !self.config.federation.observers.iter().any(|o| o == name) {
            return Err(Refusal::NotObserver(name.to_owned()));
        }
        let state = self.state();
        if role == Role::Participant && !state.registered.contains(name) {
            return Err(Refusal::NotRegistered(name.to_owned()));
        }
        Ok(StatusResponse {
            header: Some(Header::new(
                &self.definition.federation_id,
                state.task.round,
            )),
            state: state.lifecycle as i32,
            phase: state.task.phase as i32,
            total_rounds: self.definition.rounds,
            registered: state.registered.iter().cloned().collect(),
            min_participants: self.definition.min_participants,
            received: state
                .aggregator
                .as_ref()
                .map_or(0, |a| a.received().len() as u32),
            expected: state
                .aggregator
                .as_ref()
                .map_or(0, |a| a.expected().len() as u32),
            history: state.plan.history().iter().map(summary).collect(),
            message: state.failure.clone().unwrap_or_default(),
        })
    }

    /// What a participant needs for the next stage of a secure aggregation, once the stage it
    /// completed has closed; a pending relay after `timeout`. If the phase is over, the relay
    /// says DONE (with the reason if it aborted).
    pub async fn stage_relay(
        &self,
        name: &str,
        header: Option<&Header>,
        phase: Phase,
        completed: SecAggStage,
        timeout: Duration,
    ) -> Result<SecAggRelay, Refusal> {
        let round = self.check_header(header)?;
        let give_up = Instant::now() + timeout;
        let mut changes = self.task.subscribe();
        loop {
            changes.borrow_and_update();
            {
                let state = self.state();
                Self::check_registered(&state, name, Self::session(header))?;
                let asked = Task { round, phase };
                if state.task.order() < asked.order() {
                    return Err(Self::wrong_round(&state, round, phase));
                }
                let done = |aborted: String| SecAggRelay {
                    header: Some(Header::new(&self.definition.federation_id, round)),
                    phase: phase as i32,
                    stage: SecAggStage::Done as i32,
                    aborted,
                    ..Default::default()
                };
                let reason = || {
                    state
                        .aborted
                        .as_ref()
                        .filter(|(task, _)| *task == asked)
                        .map(|(_, reason)| reason.clone())
                        .unwrap_or_default()
                };
                match &state.aggregator {
                    // The stage is closing: what comes next is not known yet.
                    None if state.closing && state.task == asked => {}
                    Some(a) if state.task == asked => {
                        if a.stage() as i32 > completed as i32 {
                            return Ok(a.relay(name).unwrap_or_else(|| done(reason())));
                        }
                    }
                    _ => return Ok(done(reason())),
                }
            }
            if tokio::time::timeout_at(give_up, changes.changed())
                .await
                .is_err()
            {
                return Ok(SecAggRelay {
                    header: header.cloned(),
                    phase: phase as i32,
                    stage: completed as i32,
                    pending: true,
                    ..Default::default()
                });
            }
        }
    }
}

fn summary(r: &RoundRecord) -> RoundSummary {
    let q = r.quality;
    RoundSummary {
        round: r.round,
        participants: r.participants,
        log_loss: q.map(|q| q.log_loss),
        accuracy: q.map(|q| q.accuracy),
        auc: q.and_then(|q| q.auc),
        brier: q.map(|q| q.brier),
        bytes_up: r.bytes_up,
        bytes_down: r.bytes_down,
        seconds: r.seconds,
        aborted: r.fit_aborted,
        samples: q.map_or(0, |q| q.samples),
        evaluation_aborted: r.evaluation_aborted,
        abort_reason: r.abort_reason.clone(),
    }
}
