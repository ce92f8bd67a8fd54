//! `fairness-report.html`: the report for people. One self-contained page (inline CSS and SVG,
//! no scripts, nothing fetched) that opens in any browser from disk.

use super::metrics::{BreakdownMetrics, GroupMetrics, Rate};
use super::report::FairnessReport;
use std::fmt::Write as _;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn rate(r: &Rate) -> String {
    match (r.value, r.low, r.high) {
        (Some(v), Some(lo), Some(hi)) => format!(
            "{:.1}% <span class=ci>[{:.1}, {:.1}]</span>",
            100.0 * v,
            100.0 * lo,
            100.0 * hi
        ),
        _ => "undefined (no records to measure it on)".into(),
    }
}

fn number(v: Option<f64>) -> String {
    v.map_or("undefined".into(), |v| format!("{v:.3}"))
}

/// A difference or ratio, with the reason when undefined.
fn comparison(v: Option<f64>, undefined: Option<&String>) -> String {
    match (v, undefined) {
        (Some(v), _) => format!("{v:.3}"),
        (None, Some(why)) => format!("undefined ({})", escape(why)),
        (None, None) => "undefined".into(),
    }
}

/// Per compared rate: the groups its figures cover and those left out, with the reasons.
fn coverage(b: &BreakdownMetrics) -> String {
    let mut html = String::from("<ul class=coverage>");
    for c in &b.coverage {
        let left_out: Vec<String> = c
            .left_out
            .iter()
            .map(|l| format!("{} ({})", escape(&l.group), escape(&l.reason)))
            .collect();
        let _ = write!(
            html,
            "<li><b>{}</b> (for {}): covers {}; leaves out {}.</li>",
            escape(&c.rate),
            escape(&c.used_by.join(", ")),
            if c.covers.is_empty() {
                "no group".into()
            } else {
                escape(&c.covers.join(", "))
            },
            if left_out.is_empty() {
                "none".into()
            } else {
                left_out.join(", ")
            }
        );
    }
    html.push_str("</ul>");
    html
}

/// A horizontal bar chart of one rate per compared group, with its Wilson interval.
fn bars(title: &str, groups: &[&GroupMetrics], pick: fn(&GroupMetrics) -> &Rate) -> String {
    let (label_w, bar_w, row_h) = (260.0, 360.0, 22.0);
    let height = row_h * groups.len() as f64 + 30.0;
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg role=img width=\"{}\" height=\"{height}\" viewBox=\"0 0 {} {height}\">",
        escape(title),
        label_w + bar_w + 70.0,
        label_w + bar_w + 70.0
    );
    for (i, g) in groups.iter().enumerate() {
        let r = pick(g);
        let y = 8.0 + row_h * i as f64;
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=end>{}</text>",
            label_w - 6.0,
            y + 13.0,
            escape(&g.group)
        );
        if let (Some(v), Some(lo), Some(hi)) = (r.value, r.low, r.high) {
            let class = if g.four_fifths_flag == Some(true) {
                "flag"
            } else {
                "bar"
            };
            let _ = write!(
                svg,
                "<rect class={class} x=\"{label_w}\" y=\"{y}\" width=\"{:.1}\" height=\"15\"/><line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/><text x=\"{:.1}\" y=\"{}\">{:.1}%</text>",
                bar_w * v,
                label_w + bar_w * lo,
                label_w + bar_w * hi,
                y + 7.5,
                y + 7.5,
                label_w + bar_w * hi + 4.0,
                y + 13.0,
                100.0 * v
            );
        }
    }
    svg.push_str("</svg></figure>");
    svg
}

fn breakdown_section(b: &BreakdownMetrics) -> String {
    let mut html = format!("<section><h2>{}</h2>", escape(&b.breakdown));
    let why = |rate: &str| {
        b.coverage
            .iter()
            .find(|c| c.rate == rate)
            .and_then(|c| c.difference_undefined.as_ref())
    };
    let ratio_why = b
        .coverage
        .iter()
        .find(|c| c.rate == "selection_rate")
        .and_then(|c| c.ratio_undefined.as_ref());
    let _ = write!(
        html,
        "<p class=summary>Demographic parity difference <b>{}</b> (ratio {}), equal opportunity difference <b>{}</b>, equalized odds difference <b>{}</b>, predictive parity difference <b>{}</b>. Most favoured group: {}. Records with an unknown category: <b>{}</b>.</p>",
        comparison(b.demographic_parity_difference, why("selection_rate")),
        comparison(b.demographic_parity_ratio, ratio_why),
        comparison(b.equal_opportunity_difference, why("true_positive_rate")),
        comparison(
            b.equalized_odds_difference,
            why("true_positive_rate").or(why("false_positive_rate"))
        ),
        comparison(
            b.predictive_parity_difference,
            why("positive_predictive_value")
        ),
        escape(
            b.most_favoured
                .as_deref()
                .unwrap_or("none (no selection rate defined)")
        ),
        b.unknown_count.map_or_else(
            || "suppressed (a group with an unknown category is below min_group_size)".to_owned(),
            |n| n.to_string()
        )
    );
    html.push_str(&coverage(b));
    html.push_str("<table><tr><th>Group</th><th>n</th><th>Selection rate</th><th>TPR</th><th>FPR</th><th>FNR</th><th>PPV</th><th>Accuracy</th><th>Calibration error</th><th>Impact ratio</th><th>Flags</th></tr>");
    for g in &b.groups {
        let mut flags = Vec::new();
        if g.suppressed {
            flags.push("suppressed");
        }
        if g.small {
            flags.push("small group");
        }
        if g.unknown {
            flags.push("unknown (not compared)");
        }
        if g.four_fifths_flag == Some(true) {
            flags.push("below four-fifths");
        }
        let class = if g.four_fifths_flag == Some(true) {
            " class=flagged"
        } else {
            ""
        };
        if g.suppressed {
            let _ = write!(
                html,
                "<tr{class}><td>{}</td><td colspan=9>counts suppressed before decryption</td><td>{}</td></tr>",
                escape(&g.group),
                flags.join(", ")
            );
            continue;
        }
        let _ = write!(
            html,
            "<tr{class}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&g.group),
            g.n,
            rate(&g.selection_rate),
            rate(&g.true_positive_rate),
            rate(&g.false_positive_rate),
            rate(&g.false_negative_rate),
            rate(&g.positive_predictive_value),
            rate(&g.accuracy),
            number(g.calibration_error),
            number(g.impact_ratio),
            flags.join(", ")
        );
    }
    html.push_str("</table>");
    let compared: Vec<&GroupMetrics> = b
        .groups
        .iter()
        .filter(|g| b.compared.contains(&g.group))
        .collect();
    if !compared.is_empty() {
        html.push_str("<div class=charts>");
        html.push_str(&bars("Selection rate (95% Wilson interval); red: below four-fifths of the most favoured group", &compared, |g| &g.selection_rate));
        html.push_str(&bars(
            "True positive rate (95% Wilson interval)",
            &compared,
            |g| &g.true_positive_rate,
        ));
        html.push_str("</div>");
    }
    html.push_str("</section>");
    html
}

/// The whole page.
pub fn render(report: &FairnessReport) -> String {
    let mut html = String::from(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Accord fairness report</title><style>\
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}\
table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}tr.flagged{background:#fde8e8}.ci{color:#777;font-size:85%}\
svg text{font-size:12px;fill:#222}rect.bar{fill:#4a7bb7}rect.flag{fill:#c0392b}svg line{stroke:#222;stroke-width:1.5}\
.charts{display:flex;flex-wrap:wrap;gap:2em}figcaption{font-size:90%;color:#444}code{font-size:85%;word-break:break-all}\
dl{display:grid;grid-template-columns:max-content auto;gap:4px 16px}dt{font-weight:600}\
</style></head><body>",
    );
    let _ = write!(
        html,
        "<h1>Fairness report: {}</h1><p>Round {} of federation <b>{}</b>, written {} by the auditor whose key is <code>{}</code>. Every count below was summed under homomorphic encryption; the auditor decrypted only the consortium-wide totals. Check this report with <code>accord audit verify fairness-report.json --model model.json</code>.</p>",
        escape(&report.federation_id),
        report.round,
        escape(&report.federation_id),
        escape(&report.generated_at),
        escape(&report.auditor.verifying_key)
    );
    let t = &report.thresholds;
    let _ = write!(
        html,
        "<dl><dt>Model</dt><dd><code>{}</code></dd><dt>Mitigation</dt><dd>{}</dd><dt>Thresholds in force</dt><dd>{}</dd><dt>Participants</dt><dd>{}</dd><dt>Dropped</dt><dd>{}</dd><dt>Named for deviating</dt><dd>{}</dd>\
<dt>Disclosure policy</dt><dd>groups under {} records suppressed on ciphertexts; under {} flagged small</dd>\
<dt>Decision threshold</dt><dd>{}</dd><dt>Four-fifths threshold</dt><dd>{}</dd><dt>Intervals</dt><dd>{:.0}% Wilson score</dd>\
<dt>Encryption</dt><dd>{}</dd><dt>Secure aggregation</dt><dd>{}</dd><dt>Transcript head</dt><dd><code>{}</code></dd></dl>",
        escape(&report.model.content_hash),
        escape(&report.model.mitigation),
        escape(&report.model.thresholds_in_force),
        escape(
            &report
                .participants
                .iter()
                .map(|p| p.participant.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        if report.dropped.is_empty() {
            "none".into()
        } else {
            escape(&report.dropped.join(", "))
        },
        if report.culprits.is_empty() {
            "none".into()
        } else {
            escape(&report.culprits.join("; "))
        },
        t.min_group_size,
        t.small_group_size,
        t.decision_threshold,
        t.four_fifths,
        100.0 * t.confidence,
        escape(&report.parameters.tfhe),
        escape(&report.parameters.secure_aggregation),
        escape(&report.transcript.head)
    );
    for b in &report.metrics {
        html.push_str(&breakdown_section(b));
    }
    html.push_str("<section><h2>Definitions</h2><dl>");
    for (name, definition) in &report.definitions {
        let _ = write!(
            html,
            "<dt>{}</dt><dd>{}</dd>",
            escape(name),
            escape(definition)
        );
    }
    html.push_str("</dl></section></body></html>\n");
    html
}
