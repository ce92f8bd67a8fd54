//! Behaviour of the synthetic data generator: determinism, non-IID participants, the
//! ground-truth labels, planted bias, planted dirt, and argument errors.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use accord_simulations::synth::{
    BiasEffect, BiasSpecError, COLUMNS, DirtKind, DirtyCell, MIN_ROWS_PER_PARTICIPANT,
    ParticipantData, Record, Sector, SynthError, SynthSpec, categories, generate,
    ground_truth_logit, parse_biases, write_csvs,
};

fn all_records(data: &[ParticipantData]) -> impl Iterator<Item = &Record> {
    data.iter().flat_map(|p| p.records.iter())
}

fn satisfied_rate<'a>(records: impl Iterator<Item = &'a Record>) -> f64 {
    let (mut satisfied, mut total) = (0usize, 0usize);
    for record in records {
        satisfied += usize::from(record.satisfied());
        total += 1;
    }
    satisfied as f64 / total as f64
}

fn read_files(paths: &[std::path::PathBuf]) -> Vec<Vec<u8>> {
    paths.iter().map(|p| fs::read(p).unwrap()).collect()
}

fn biased(spec: &SynthSpec, bias: &str) -> SynthSpec {
    SynthSpec {
        bias: parse_biases(bias).unwrap(),
        ..spec.clone()
    }
}

#[test]
fn same_spec_gives_identical_files_and_another_seed_does_not() {
    let spec = SynthSpec {
        dirty_rate: 0.05,
        ..biased(&SynthSpec::new(3, 300, 11), "gender=female:wait*1.5")
    };
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let first = write_csvs(&generate(&spec).unwrap(), a.path()).unwrap();
    let second = write_csvs(&generate(&spec).unwrap(), b.path()).unwrap();
    let other_seed = SynthSpec {
        seed: 12,
        ..spec.clone()
    };
    let third = write_csvs(&generate(&other_seed).unwrap(), c.path()).unwrap();

    let names: Vec<_> = first
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["org-1.csv", "org-2.csv", "org-3.csv"]);
    assert_eq!(first[0], a.path().join("org-1.csv"));
    assert_eq!(read_files(&first), read_files(&second));
    for (same, different) in read_files(&first).iter().zip(read_files(&third)) {
        assert_ne!(*same, different);
    }
}

#[test]
fn participants_differ_in_size_and_sector_mix() {
    let data = generate(&SynthSpec::new(8, 1000, 3)).unwrap();
    let sizes: Vec<usize> = data.iter().map(|p| p.records.len()).collect();
    let distinct: HashSet<_> = sizes.iter().collect();
    assert_eq!(distinct.len(), sizes.len(), "sizes {sizes:?}");
    let (min, max) = (*sizes.iter().min().unwrap(), *sizes.iter().max().unwrap());
    assert!(
        min < 550 && max > 1450,
        "sizes {sizes:?} should spread over 0.4x..1.6x"
    );
    let total: usize = sizes.iter().sum();
    assert!((7600..=8400).contains(&total), "total {total}");

    let sectors: Vec<Sector> = data.iter().map(|p| p.sector).collect();
    assert_eq!(&sectors[..4], Sector::ROTATION);
    assert_eq!(&sectors[4..], Sector::ROTATION);
    let share = |p: &ParticipantData, column: &str, value: &str| {
        p.records
            .iter()
            .filter(|r| r.category(column) == Some(value))
            .count() as f64
            / p.records.len() as f64
    };
    // The retailer (org-3) serves far more delivery issues and chats than the bank (org-1),
    // and the insurer (org-2) has older customers than the retailer.
    assert!(
        share(&data[2], "issue_category", "delivery")
            > share(&data[0], "issue_category", "delivery") + 0.3
    );
    assert!(share(&data[2], "channel", "chat") > share(&data[0], "channel", "chat") + 0.08);
    assert!(share(&data[1], "age_band", "60+") > share(&data[2], "age_band", "60+") + 0.08);
    // Half of each participant's customers come from its home region, which rotates.
    assert!(share(&data[0], "region", "north") > 0.4);
    assert!(share(&data[1], "region", "south") > 0.4);
    assert!(share(&data[1], "region", "north") < 0.25);
}

#[test]
fn tiny_row_counts_still_give_every_participant_a_few_dozen_rows() {
    let data = generate(&SynthSpec::new(5, 3, 1)).unwrap();
    assert!(
        data.iter()
            .all(|p| p.records.len() == MIN_ROWS_PER_PARTICIPANT)
    );
    let single = generate(&SynthSpec::new(1, 500, 1)).unwrap();
    assert!((475..=525).contains(&single[0].records.len()));
}

#[test]
fn ids_are_unique_and_values_stay_in_their_domains() {
    let data = generate(&SynthSpec::new(6, 400, 5)).unwrap();
    let mut interactions = HashSet::new();
    let mut customers_of = Vec::new();
    for p in &data {
        let customers: HashSet<&str> = p.records.iter().map(|r| r.customer_id.as_str()).collect();
        assert!(
            customers.len() < p.records.len(),
            "{}: customers should recur",
            p.name
        );
        customers_of.push(customers);
        for r in &p.records {
            assert!(
                interactions.insert(r.interaction_id.clone()),
                "duplicate {}",
                r.interaction_id
            );
            assert!(r.interaction_id.starts_with(&format!("{}-i", p.name)));
            assert!(r.customer_id.starts_with(&format!("{}-c", p.name)));
            for column in COLUMNS {
                if let Some(allowed) = categories(column) {
                    let value = r.category(column).unwrap();
                    assert!(allowed.contains(&value), "{column}={value}");
                }
            }
            assert!(r.wait_seconds > 0.0 && r.handle_seconds > 0.0, "{r:?}");
            assert!((-1.0..=1.0).contains(&r.sentiment), "{r:?}");
            assert!(
                r.agent_tenure_months >= 0.0 && r.customer_tenure_months >= 0.0,
                "{r:?}"
            );
            assert!((1..=5).contains(&r.csat) && r.nps <= 10, "{r:?}");
        }
    }
    for (i, a) in customers_of.iter().enumerate() {
        for b in &customers_of[i + 1..] {
            assert!(a.is_disjoint(b));
        }
    }
}

#[test]
fn a_recurring_customer_keeps_the_same_demographics() {
    let data = generate(&SynthSpec::new(1, 600, 8)).unwrap();
    let mut seen = std::collections::HashMap::new();
    for r in &data[0].records {
        let profile = (
            r.age_band,
            r.gender,
            r.disability,
            r.region,
            r.language,
            r.customer_tenure_months.to_bits(),
        );
        assert_eq!(
            *seen.entry(r.customer_id.clone()).or_insert(profile),
            profile,
            "{}",
            r.customer_id
        );
    }
}

#[test]
fn features_depend_on_each_other_plausibly() {
    let data = generate(&SynthSpec::new(4, 2500, 21)).unwrap();
    let records: Vec<&Record> = all_records(&data).collect();
    let mean = |f: &dyn Fn(&Record) -> f64, keep: &dyn Fn(&Record) -> bool| {
        let values: Vec<f64> = records.iter().filter(|r| keep(r)).map(|r| f(r)).collect();
        values.iter().sum::<f64>() / values.len() as f64
    };
    let wait = |r: &Record| r.wait_seconds;
    assert!(mean(&wait, &|r| r.channel == "email") > 3.0 * mean(&wait, &|r| r.channel == "chat"));
    let sentiment = |r: &Record| r.sentiment;
    assert!(
        mean(&sentiment, &|r| r.first_contact_resolution)
            > mean(&sentiment, &|r| !r.first_contact_resolution) + 0.3
    );
    let resolved = |r: &Record| f64::from(u8::from(r.first_contact_resolution));
    assert!(mean(&resolved, &|r| r.transfers == 0) > mean(&resolved, &|r| r.transfers >= 2) + 0.3);
    let nps = |r: &Record| f64::from(r.nps);
    assert!(mean(&nps, &|r| r.csat == 5) > mean(&nps, &|r| r.csat == 1) + 4.0);
}

#[test]
fn satisfied_labels_are_bernoulli_of_the_ground_truth_logit() {
    let data = generate(&SynthSpec::new(4, 2500, 99)).unwrap();
    let records: Vec<&Record> = all_records(&data).collect();
    let overall = satisfied_rate(records.iter().copied());
    assert!((0.55..=0.70).contains(&overall), "satisfied rate {overall}");

    // Calibration: within bins of sigmoid(logit), the satisfied rate matches the mean probability.
    let mut bins = vec![(0.0, 0.0, 0usize); 10];
    let mut bayes_accuracy = 0.0;
    for r in &records {
        let p = 1.0 / (1.0 + (-ground_truth_logit(r, &[])).exp());
        let bin = &mut bins[((p * 10.0) as usize).min(9)];
        bin.0 += p;
        bin.1 += f64::from(u8::from(r.satisfied()));
        bin.2 += 1;
        bayes_accuracy += p.max(1.0 - p);
    }
    for (i, (p_sum, satisfied, n)) in bins.iter().enumerate() {
        if *n >= 300 {
            let (expected, observed) = (p_sum / *n as f64, satisfied / *n as f64);
            assert!(
                (expected - observed).abs() < 0.05,
                "bin {i}: expected {expected:.3}, observed {observed:.3} over {n}"
            );
        }
    }
    // The labels are learnable, but not trivially.
    let bayes_accuracy = bayes_accuracy / records.len() as f64;
    assert!(
        (0.75..=0.87).contains(&bayes_accuracy),
        "best possible accuracy {bayes_accuracy}"
    );
}

#[test]
fn without_bias_protected_groups_are_equally_satisfied() {
    let data = generate(&SynthSpec::new(8, 3000, 4)).unwrap();
    for column in ["age_band", "gender", "disability", "region", "language"] {
        for value in categories(column).unwrap() {
            let (group, rest): (Vec<&Record>, Vec<&Record>) =
                all_records(&data).partition(|r| r.category(column) == Some(value));
            if group.len() >= 2000 {
                let (inside, outside) = (
                    satisfied_rate(group.into_iter()),
                    satisfied_rate(rest.into_iter()),
                );
                assert!(
                    (inside - outside).abs() < 0.035,
                    "{column}={value}: {inside:.3} vs the rest {outside:.3}"
                );
            }
        }
    }
}

#[test]
fn a_penalty_lowers_only_the_targeted_group() {
    let spec = SynthSpec::new(4, 2000, 17);
    let fair = generate(&spec).unwrap();
    let unfair = generate(&biased(&spec, "age_band=60+:penalty=0.8")).unwrap();
    let old = |data: &[ParticipantData]| -> Vec<Record> {
        all_records(data)
            .filter(|r| r.age_band == "60+")
            .cloned()
            .collect()
    };
    let (fair_old, unfair_old) = (old(&fair), old(&unfair));
    let drop = satisfied_rate(fair_old.iter()) - satisfied_rate(unfair_old.iter());
    assert!(drop > 0.10, "60+ satisfied rate dropped by only {drop:.3}");

    let penalty = parse_biases("age_band=60+:penalty=0.8").unwrap();
    for (f, u) in all_records(&fair).zip(all_records(&unfair)) {
        if f.age_band == "60+" {
            // Same features, lower logit, never a better label.
            assert_eq!(
                (f.wait_seconds, f.transfers, f.sentiment),
                (u.wait_seconds, u.transfers, u.sentiment)
            );
            assert!(u.csat <= f.csat);
            let gap = ground_truth_logit(u, &[]) - ground_truth_logit(u, &penalty);
            assert!((gap - 0.8).abs() < 1e-12);
        } else {
            assert_eq!(f, u);
            assert_eq!(ground_truth_logit(u, &penalty), ground_truth_logit(u, &[]));
        }
    }
}

#[test]
fn a_wait_multiplier_lengthens_the_groups_waits() {
    let spec = SynthSpec::new(4, 1500, 23);
    let fair = generate(&spec).unwrap();
    let unfair = generate(&biased(&spec, "disability=yes:wait*3")).unwrap();
    let (mut before, mut after) = (0.0, 0.0);
    for (f, u) in all_records(&fair).zip(all_records(&unfair)) {
        if f.disability == "yes" {
            before += f.wait_seconds;
            after += u.wait_seconds;
            assert!(
                u.sentiment <= f.sentiment,
                "longer waits cannot improve sentiment"
            );
        } else {
            assert_eq!(f, u);
        }
    }
    let ratio = after / before;
    assert!((ratio - 3.0).abs() < 0.01, "wait ratio {ratio}");
    let group = |data: &[ParticipantData]| -> Vec<Record> {
        all_records(data)
            .filter(|r| r.disability == "yes")
            .cloned()
            .collect()
    };
    assert!(satisfied_rate(group(&fair).iter()) > satisfied_rate(group(&unfair).iter()) + 0.03);
}

#[test]
fn written_csv_round_trips_the_records() {
    let data = generate(&SynthSpec::new(2, 150, 31)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let paths = write_csvs(&data, &dir.path().join("nested/out")).unwrap();
    for (p, path) in data.iter().zip(&paths) {
        let mut reader = csv::Reader::from_path(path).unwrap();
        assert_eq!(reader.headers().unwrap(), COLUMNS.as_slice());
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), p.records.len());
        for (row, record) in rows.iter().zip(&p.records) {
            assert_eq!(row, record.csv_fields().as_slice());
            assert_eq!(row[4].parse::<f64>().unwrap(), record.wait_seconds);
            assert_eq!(row[9].parse::<f64>().unwrap(), record.sentiment);
            assert!(["true", "false"].contains(&&row[8]) && ["true", "false"].contains(&&row[11]));
        }
    }
}

/// Whether a written cell is malformed for its column by the documented rules.
fn malformed(column: &str, text: &str) -> bool {
    if let Some(allowed) = categories(column) {
        return !allowed.contains(&text);
    }
    match column {
        "first_contact_resolution" | "ai_assisted" => !["true", "false"].contains(&text),
        "csat" => !text.parse::<u8>().is_ok_and(|v| (1..=5).contains(&v)),
        "nps" => !text.parse::<u8>().is_ok_and(|v| v <= 10),
        "transfers" | "contacts_30d" => text.parse::<u32>().is_err(),
        _ => !text.parse::<f64>().is_ok_and(f64::is_finite),
    }
}

#[test]
fn dirt_is_planted_at_the_recorded_cells_at_the_requested_rate() {
    let spec = SynthSpec {
        dirty_rate: 0.1,
        ..SynthSpec::new(4, 500, 41)
    };
    let data = generate(&spec).unwrap();
    assert_eq!(
        data.iter().map(|p| &p.records).collect::<Vec<_>>(),
        generate(&SynthSpec::new(4, 500, 41))
            .unwrap()
            .iter()
            .map(|p| &p.records)
            .collect::<Vec<_>>(),
        "dirt must not change the records"
    );
    let dir = tempfile::tempdir().unwrap();
    let paths = write_csvs(&data, dir.path()).unwrap();
    let mut kinds = HashSet::new();
    for (p, path) in data.iter().zip(&paths) {
        let expected = (0.1 * p.records.len() as f64).round() as usize;
        assert_eq!(p.dirty.len(), expected, "{}", p.name);
        assert!(
            p.dirty.windows(2).all(|w| w[0].row < w[1].row),
            "one cell per row, sorted"
        );
        let rows: Vec<csv::StringRecord> = csv::Reader::from_path(path)
            .unwrap()
            .records()
            .map(Result::unwrap)
            .collect();
        let mut dirty = p.dirty.iter().peekable();
        for (index, (row, record)) in rows.iter().zip(&p.records).enumerate() {
            let clean = record.csv_fields();
            let differing: Vec<usize> =
                (0..COLUMNS.len()).filter(|&c| row[c] != clean[c]).collect();
            match dirty.next_if(|cell| cell.row == index + 1) {
                Some(cell) => {
                    let column = COLUMNS.iter().position(|c| *c == cell.column).unwrap();
                    assert!(column >= 2, "ids stay clean");
                    assert_eq!(differing, [column], "{} row {}", p.name, cell.row);
                    assert_eq!(&row[column], cell.text);
                    assert!(
                        malformed(cell.column, cell.text),
                        "{cell:?} is not malformed"
                    );
                    kinds.insert(cell.kind);
                }
                None => assert!(
                    differing.is_empty(),
                    "{} row {} is dirty but not recorded",
                    p.name,
                    index + 1
                ),
            }
        }
        assert!(dirty.next().is_none());
    }
    for kind in [
        DirtKind::Empty,
        DirtKind::NotANumber,
        DirtKind::NaN,
        DirtKind::UnknownCategory,
        DirtKind::OutOfRange,
    ] {
        assert!(kinds.contains(&kind), "no {kind:?} planted");
    }
}

#[test]
fn dirty_rate_bounds_dirty_nothing_or_everything() {
    let none = generate(&SynthSpec::new(3, 100, 2)).unwrap();
    assert!(none.iter().all(|p| p.dirty.is_empty()));
    let all = generate(&SynthSpec {
        dirty_rate: 1.0,
        ..SynthSpec::new(3, 100, 2)
    })
    .unwrap();
    for p in &all {
        let rows: Vec<usize> = p.dirty.iter().map(|c| c.row).collect();
        assert_eq!(rows, (1..=p.records.len()).collect::<Vec<_>>());
    }
}

#[test]
fn bias_grammar_parses_and_prints_back() {
    let biases = parse_biases(
        " age_band=60+:wait*2 ; gender = nonbinary : penalty=-0.25;channel=social:penalty=1",
    )
    .unwrap();
    assert_eq!(biases.len(), 3);
    assert_eq!(
        (biases[0].attribute.as_str(), biases[0].value.as_str()),
        ("age_band", "60+")
    );
    assert_eq!(biases[0].effect, BiasEffect::WaitMultiplier(2.0));
    assert_eq!(biases[1].effect, BiasEffect::SatisfactionPenalty(-0.25));
    assert_eq!(biases[2].to_string(), "channel=social:penalty=1");
    for bias in &biases {
        assert_eq!(
            bias.to_string()
                .parse::<accord_simulations::synth::Bias>()
                .unwrap(),
            *bias
        );
    }
    assert!(parse_biases("  ").unwrap().is_empty());
}

#[test]
fn bad_biases_are_rejected_naming_the_bad_part() {
    let error = |spec: &str| match parse_biases(spec) {
        Err(SynthError::Bias(error)) => error,
        other => panic!("{spec:?} gave {other:?}"),
    };
    assert!(matches!(
        error("age_band=60+:wait*2;;gender=male:penalty=1"),
        BiasSpecError::Empty
    ));
    assert!(matches!(
        error("age_band=60+"),
        BiasSpecError::MissingEffect { .. }
    ));
    assert!(
        matches!(error("age_band:wait*2"), BiasSpecError::MissingGroup { group, .. } if group == "age_band")
    );
    let unknown = error("age=60+:wait*2");
    assert!(
        matches!(&unknown, BiasSpecError::UnknownAttribute { attribute, .. } if attribute == "age")
    );
    assert!(unknown.to_string().contains("\"age\""), "{unknown}");
    assert!(matches!(
        error("wait_seconds=10:penalty=1"),
        BiasSpecError::UnknownAttribute { .. }
    ));
    let value = error("age_band=70+:penalty=1");
    assert!(matches!(&value, BiasSpecError::UnknownValue { value, .. } if value == "70+"));
    assert!(
        value.to_string().contains("18-29, 30-44, 45-59, 60+"),
        "{value}"
    );
    assert!(
        matches!(error("gender=male:slower"), BiasSpecError::UnknownEffect { effect, .. } if effect == "slower")
    );
    assert!(
        matches!(error("gender=male:wait*two"), BiasSpecError::BadNumber { number, .. } if number == "two")
    );
    assert!(matches!(
        error("gender=male:wait*0"),
        BiasSpecError::BadMultiplier { .. }
    ));
    assert!(matches!(
        error("gender=male:wait*inf"),
        BiasSpecError::BadMultiplier { .. }
    ));
    assert!(matches!(
        error("gender=male:penalty=NaN"),
        BiasSpecError::BadPenalty { .. }
    ));
}

#[test]
fn invalid_specs_are_rejected() {
    let base = SynthSpec::new(2, 100, 1);
    assert!(matches!(
        generate(&SynthSpec {
            participants: 0,
            ..base.clone()
        }),
        Err(SynthError::NoParticipants)
    ));
    assert!(matches!(
        generate(&SynthSpec {
            rows: 0,
            ..base.clone()
        }),
        Err(SynthError::NoRows)
    ));
    for rate in [-0.1, 1.5, f64::NAN] {
        let result = generate(&SynthSpec {
            dirty_rate: rate,
            ..base.clone()
        });
        assert!(
            matches!(result, Err(SynthError::DirtyRate(_))),
            "rate {rate}"
        );
    }
    // Biases built in code are validated as well.
    let mut unknown_group = parse_biases("region=north:wait*2").unwrap();
    unknown_group[0].value = "arctic".into();
    let result = generate(&SynthSpec {
        bias: unknown_group,
        ..base.clone()
    });
    assert!(matches!(
        result,
        Err(SynthError::Bias(BiasSpecError::UnknownValue { .. }))
    ));
    let error = generate(&SynthSpec {
        dirty_rate: 2.0,
        ..base
    })
    .unwrap_err();
    assert!(error.to_string().contains('2'), "{error}");
}

#[test]
fn write_errors_name_the_path_or_the_cell() {
    let data = generate(&SynthSpec::new(1, 50, 1)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, "x").unwrap();
    let error = write_csvs(&data, &file).unwrap_err();
    assert!(
        matches!(error, SynthError::CreateDir { ref path, .. } if path == &file),
        "{error}"
    );
    assert!(error.to_string().contains("not-a-dir"));

    let mut misplaced = data.clone();
    let rows = misplaced[0].records.len();
    misplaced[0].dirty = vec![DirtyCell {
        row: rows + 1,
        column: "csat",
        kind: DirtKind::OutOfRange,
        text: "9",
    }];
    let error = write_csvs(&misplaced, dir.path()).unwrap_err();
    assert!(
        matches!(error, SynthError::MisplacedDirt { row, .. } if row == rows + 1),
        "{error}"
    );
    assert!(error.to_string().contains("org-1") && error.to_string().contains("csat"));
    assert!(
        !Path::new(&dir.path().join("org-1.csv")).exists(),
        "nothing written for a bad plan"
    );
}
