//! Usage: events, plugin calls, fuel, refused actions, failures and the
//! circuit breaker per installation over a day, a week or a month, as small
//! bar charts drawn on the server (SVG, no script) with their totals in
//! text beside them.

use askama::Template;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::web::{Chrome, Section, Signed, render};
use super::words;
use crate::service::usage::{self, Series, Window};

#[derive(Deserialize)]
pub struct UsageQuery {
    window: Option<String>,
}

/// One chart: a series as bars, with what it shows in words.
pub struct Chart {
    pub label: String,
    pub total: String,
    pub svg: String,
}

const WIDTH: u64 = 240;
const HEIGHT: u64 = 48;

/// Bars for a series, scaled to its peak. The SVG carries its meaning as
/// an accessible name; its colours come from the style sheet.
fn chart(label: &str, series: &Series, window: Window) -> Chart {
    let total: u64 = series.iter().sum();
    let peak = series.iter().copied().max().unwrap_or(0);
    let n = series.len().max(1) as u64;
    let slot = WIDTH as f64 / n as f64;
    let bar = (slot - 1.0).max(1.0);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         role=\"img\" aria-label=\"{} over the last {}: {} in all, at most {} in one bar\" \
         preserveAspectRatio=\"none\"><line class=\"axis\" x1=\"0\" y1=\"{HEIGHT}\" x2=\"{WIDTH}\" y2=\"{HEIGHT}\"/>",
        escape(label),
        window.name(),
        total,
        peak
    );
    if peak > 0 {
        for (i, value) in series.iter().enumerate() {
            if *value == 0 {
                continue;
            }
            let h = ((*value as f64 / peak as f64) * (HEIGHT as f64 - 2.0)).max(1.0);
            svg.push_str(&format!(
                "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\"/>",
                i as f64 * slot,
                HEIGHT as f64 - h
            ));
        }
    }
    svg.push_str("</svg>");
    Chart {
        label: label.to_owned(),
        total: words::count(total),
        svg,
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub struct InstallationRow {
    pub installation: String,
    pub plugin: String,
    pub state: &'static str,
    pub breaker_open: bool,
    pub charts: Vec<Chart>,
}

#[derive(Template)]
#[template(path = "usage.html")]
struct UsagePage {
    chrome: Chrome,
    windows: Vec<(&'static str, &'static str, bool)>,
    from: String,
    events: Chart,
    installations: Vec<InstallationRow>,
    complete: bool,
}

/// The usage of the tenant's flow.
pub async fn index(signed: Signed, Query(query): Query<UsageQuery>) -> Response {
    let window = query
        .window
        .as_deref()
        .and_then(Window::parse)
        .unwrap_or(Window::Day);
    let service = signed.service().clone();
    let caller = signed.caller.clone();
    // A month of a busy tenant's trail is a lot of reading: off the async
    // threads.
    let report =
        match tokio::task::spawn_blocking(move || usage::report(&service, &caller, window)).await {
            Ok(Ok(report)) => report,
            Ok(Err(error)) => return signed.failure(error),
            Err(error) => return signed.failure(error.into()),
        };
    let installations = report
        .installations
        .iter()
        .map(|i| InstallationRow {
            installation: i.installation.clone(),
            plugin: i.plugin.clone(),
            state: if i.removed {
                "removed"
            } else if i.enabled {
                "enabled"
            } else {
                "disabled"
            },
            breaker_open: i.breaker_open,
            charts: vec![
                chart("Plugin calls", &i.calls, window),
                chart("Fuel", &i.fuel, window),
                chart("Refused actions", &i.refused, window),
                chart("Failures", &i.failures, window),
                chart("Not run (restricted or objected)", &i.skipped, window),
                chart("Breaker openings", &i.breaker_opened, window),
            ],
        })
        .collect();
    render(
        StatusCode::OK,
        &UsagePage {
            chrome: signed.chrome(Some(Section::Usage), "Usage"),
            windows: [
                ("day", "Last 24 hours"),
                ("week", "Last 7 days"),
                ("month", "Last 30 days"),
            ]
            .into_iter()
            .map(|(id, label)| (id, label, id == window.name()))
            .collect(),
            from: words::time(report.from),
            events: chart("Events received", &report.events, window),
            installations,
            complete: report.complete,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_scales_bars_to_the_peak_and_says_what_it_shows() {
        let c = chart("Calls <&>", &vec![0, 2, 4, 0], Window::Day);
        assert_eq!(c.total, "6");
        assert_eq!(c.svg.matches("<rect").count(), 2);
        assert!(c.svg.contains("height=\"46.0\""), "{}", c.svg);
        assert!(
            c.svg
                .contains("aria-label=\"Calls &lt;&amp;&gt; over the last day: 6 in all")
        );
        let empty = chart("Calls", &vec![0; 24], Window::Day);
        assert_eq!(empty.svg.matches("<rect").count(), 0);
    }
}
