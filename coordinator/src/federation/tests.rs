//! The federation's RPC handlers without a network: each refusal is the typed [`Refusal`] the
//! gRPC service turns into a status.

use super::*;
use std::path::Path;

const EXAMPLE: &str = include_str!("../../../examples/coordinator.toml");

/// The example federation (roster org-1..org-3, secure aggregation), with no CA behind its
/// trust: these handlers check no signature.
fn federation() -> Federation {
    let config = CoordinatorConfig::parse(EXAMPLE, Path::new("coordinator.toml")).unwrap();
    Federation::new(config, WireMeter::new(), Trust::new(Vec::new())).unwrap()
}

fn header(federation: &Federation, round: u32, session: u64) -> Header {
    Header::new(&federation.definition.federation_id, round).in_session(session)
}

#[test]
fn registration_checks_federation_round_and_roster_and_a_new_session_replaces_the_old() {
    let f = federation();
    let other = Header::new("another-federation", 0);
    assert!(matches!(
        f.register("org-1", Some(&other)),
        Err(Refusal::WrongFederation { .. })
    ));
    assert_eq!(f.register("org-1", None), Err(Refusal::MissingHeader));
    assert!(matches!(
        f.register("org-1", Some(&header(&f, 3, 0))),
        Err(Refusal::WrongRound { got_round: 3, .. })
    ));
    assert_eq!(
        f.register("org-9", Some(&header(&f, 0, 0))),
        Err(Refusal::NotOnRoster("org-9".into()))
    );
    let first = f.register("org-1", Some(&header(&f, 0, 0))).unwrap();
    assert!(!first.replaced);
    assert_eq!(first.federation.as_ref(), Some(&f.definition));
    let second = f.register("org-1", Some(&header(&f, 0, 0))).unwrap();
    assert!(second.replaced);
    assert_ne!(first.session, second.session);
    // The replaced session is refused; the new one is heard; none at all is refused too.
    assert_eq!(
        f.model("org-1", Some(&header(&f, 0, first.session))),
        Err(Refusal::Replaced("org-1".into()))
    );
    assert_eq!(
        f.model("org-1", Some(&header(&f, 0, 0))),
        Err(Refusal::NoSession("org-1".into()))
    );
    assert_eq!(
        f.model("org-1", Some(&header(&f, 0, second.session))),
        Err(Refusal::NoModel(0, "none")),
        "no model before the standardization"
    );
}

#[test]
fn uploads_outside_the_open_phase_or_from_strangers_are_refused() {
    let f = federation();
    let session = f
        .register("org-2", Some(&header(&f, 0, 0)))
        .unwrap()
        .session;
    assert_eq!(
        f.upload(
            "org-3",
            Some(&header(&f, 0, session)),
            Phase::Standardize,
            None
        ),
        Err(Refusal::NotRegistered("org-3".into()))
    );
    // No phase is open yet: a fit upload is for a phase that is not running.
    assert!(matches!(
        f.upload("org-2", Some(&header(&f, 0, session)), Phase::Fit, None),
        Err(Refusal::WrongRound {
            got_phase: "fit",
            ..
        })
    ));
    assert_eq!(
        f.status("org-3", Role::Participant),
        Err(Refusal::NotRegistered("org-3".into()))
    );
    assert_eq!(
        f.status("monitor", Role::Auditor),
        Err(Refusal::NotObserver("monitor".into()))
    );
}
