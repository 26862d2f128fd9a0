//! The yearly request report (R10): per right, requests received, complied with in whole or in
//! part, denied (by reason), closed otherwise, still open, and the mean and median days to
//! respond; plus two SVG charts, requests per month and median days to close per month, each
//! with its figures in a table beside it. Figures only, no personal data.

use crate::store::{ReportRow, Store};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RightFigures {
    pub right: String,
    pub received: i64,
    pub complied_in_whole: i64,
    pub complied_in_part: i64,
    pub denied: i64,
    pub denied_by_reason: BTreeMap<String, i64>,
    /// Closed as unverifiable or withdrawn by the requester.
    pub closed_otherwise: i64,
    pub open: i64,
    pub mean_days_to_respond: Option<f64>,
    pub median_days_to_respond: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub year: i32,
    pub rights: Vec<RightFigures>,
    pub total: RightFigures,
    /// Requests received in each month, January first.
    pub per_month: [i64; 12],
    /// Of the requests received in each month, those answered (complied with or denied): the
    /// requests whose days to respond the table counts.
    pub answered_per_month: [i64; 12],
    /// The median days from receipt to answer of those requests, by month received.
    pub median_days_to_close_per_month: [Option<f64>; 12],
}

/// Month names for the charts and their tables, January first.
pub const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn days(row: &ReportRow) -> Option<f64> {
    let closed = row.closed_at?;
    Some(((closed - row.received_at).max(0)) as f64 / 86_400.0)
}

/// The days a request took to be answered, if it was: complied with in whole or in part, or
/// denied. Withdrawn and unverifiable requests were closed, not answered.
fn days_to_respond(row: &ReportRow) -> Option<f64> {
    if matches!(
        row.state.as_str(),
        "fulfilled" | "partly_fulfilled" | "declined" | "appeal_upheld"
    ) {
        days(row)
    } else {
        None
    }
}

fn mean_median(mut values: Vec<f64>) -> (Option<f64>, Option<f64>) {
    if values.is_empty() {
        return (None, None);
    }
    values.sort_by(f64::total_cmp);
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let mid = values.len() / 2;
    let median = if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    };
    let round = |v: f64| (v * 10.0).round() / 10.0;
    (Some(round(mean)), Some(round(median)))
}

fn figures(right: &str, rows: &[&ReportRow]) -> RightFigures {
    let mut f = RightFigures {
        right: right.to_string(),
        ..RightFigures::default()
    };
    let mut responded = Vec::new();
    for row in rows {
        f.received += 1;
        match row.state.as_str() {
            "fulfilled" => f.complied_in_whole += 1,
            "partly_fulfilled" => f.complied_in_part += 1,
            // An upheld appeal keeps the decision: a partial answer stays partial.
            "appeal_upheld" if row.decline_code.is_none() => f.complied_in_part += 1,
            "declined" | "appeal_upheld" => {
                f.denied += 1;
                let reason = row.decline_code.clone().unwrap_or_else(|| "other".into());
                *f.denied_by_reason.entry(reason).or_default() += 1;
            }
            "unverifiable" | "withdrawn" => f.closed_otherwise += 1,
            _ => f.open += 1,
        }
        if let Some(d) = days_to_respond(row) {
            responded.push(d);
        }
    }
    (f.mean_days_to_respond, f.median_days_to_respond) = mean_median(responded);
    f
}

/// Computes the report from the requests received in `year` (UTC).
pub fn compute(year: i32, rows: &[ReportRow]) -> Report {
    let mut by_right: BTreeMap<&str, Vec<&ReportRow>> = BTreeMap::new();
    let mut per_month = [0i64; 12];
    let mut answered: [Vec<f64>; 12] = Default::default();
    for row in rows {
        by_right.entry(&row.right_name).or_default().push(row);
        let month = super::day_of(row.received_at).month() as usize;
        per_month[month - 1] += 1;
        if let Some(d) = days_to_respond(row) {
            answered[month - 1].push(d);
        }
    }
    let answered_per_month = std::array::from_fn(|m| answered[m].len() as i64);
    let median_days_to_close_per_month =
        std::array::from_fn(|m| mean_median(answered[m].clone()).1);
    let rights = by_right
        .iter()
        .map(|(right, rows)| figures(right, rows))
        .collect();
    let all: Vec<&ReportRow> = rows.iter().collect();
    Report {
        year,
        rights,
        total: figures("all", &all),
        per_month,
        answered_per_month,
        median_days_to_close_per_month,
    }
}

pub async fn for_year(store: &Store, year: i32) -> anyhow::Result<Report> {
    let start = |y: i32| {
        time::Date::from_calendar_date(y, time::Month::January, 1)
            .map(|d| d.midnight().assume_utc().unix_timestamp())
            .unwrap_or(0)
    };
    let rows = store.report_rows(start(year), start(year + 1)).await?;
    Ok(compute(year, &rows))
}

fn num(value: Option<f64>) -> String {
    value.map(|v| format!("{v:.1}")).unwrap_or_default()
}

/// One month of the charts, as the tables beside them show it.
#[derive(Debug, Clone, PartialEq)]
pub struct MonthFigures {
    pub month: &'static str,
    pub received: i64,
    pub answered: i64,
    /// One decimal, empty when nothing received that month was answered.
    pub median_days_to_close: String,
}

struct Chart<'a> {
    /// Prefix of the ids that tie the title and description to the chart.
    id: &'a str,
    title: &'a str,
    desc: &'a str,
    colour: &'a str,
    bars: [f64; 12],
    /// What each bar says to a pointer or a screen reader.
    titles: [String; 12],
}

/// Twelve bars, January first, scaled to the largest; inline SVG with no script, labelled by
/// its own title and description.
fn bar_chart(chart: &Chart<'_>) -> String {
    let max = chart.bars.iter().copied().fold(0.0_f64, f64::max);
    let max = if max > 0.0 { max } else { 1.0 };
    let id = chart.id;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 480 200\" width=\"480\" \
         height=\"200\" role=\"img\" id=\"{id}\" aria-labelledby=\"{id}-title {id}-desc\">\
         <title id=\"{id}-title\">{}</title><desc id=\"{id}-desc\">{}</desc>",
        escape(chart.title),
        escape(chart.desc)
    );
    for (i, value) in chart.bars.iter().enumerate() {
        let height = (value / max * 160.0).round();
        let x = 10 + i * 39;
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"{}\" width=\"30\" height=\"{height}\" fill=\"{}\">\
             <title>{}</title></rect><text x=\"{}\" y=\"195\" font-size=\"12\" \
             text-anchor=\"middle\" aria-hidden=\"true\">{}</text>",
            170.0 - height,
            chart.colour,
            escape(&chart.titles[i]),
            x + 15,
            &MONTHS[i][..1]
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The chart's words are ours, but they go into markup: escape them anyway.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Report {
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "right,received,complied_in_whole,complied_in_part,denied,denied_by_reason,\
             closed_otherwise,open,mean_days_to_respond,median_days_to_respond\n",
        );
        for f in self.rights.iter().chain(std::iter::once(&self.total)) {
            let reasons = f
                .denied_by_reason
                .iter()
                .map(|(reason, n)| format!("{reason}={n}"))
                .collect::<Vec<_>>()
                .join(";");
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{}",
                f.right,
                f.received,
                f.complied_in_whole,
                f.complied_in_part,
                f.denied,
                reasons,
                f.closed_otherwise,
                f.open,
                num(f.mean_days_to_respond),
                num(f.median_days_to_respond)
            );
        }
        out
    }

    /// One line per month: the figures both charts draw, for the tables beside them.
    pub fn months(&self) -> Vec<MonthFigures> {
        (0..12)
            .map(|m| MonthFigures {
                month: MONTHS[m],
                received: self.per_month[m],
                answered: self.answered_per_month[m],
                median_days_to_close: num(self.median_days_to_close_per_month[m]),
            })
            .collect()
    }

    /// Requests received per month as a bar chart (inline SVG, no script).
    pub fn svg(&self) -> String {
        let bars = self.per_month.map(|n| n as f64);
        let titles =
            std::array::from_fn(|m| format!("{}: {} received", MONTHS[m], self.per_month[m]));
        bar_chart(&Chart {
            id: "chart-received",
            title: &format!("Requests received per month in {}", self.year),
            desc: &format!(
                "{} requests in all; the figures are in the table below.",
                self.total.received
            ),
            colour: "#36c",
            bars,
            titles,
        })
    }

    /// The median days from receipt to answer, by month received, as a bar chart.
    pub fn days_to_close_svg(&self) -> String {
        let bars = self
            .median_days_to_close_per_month
            .map(|d| d.unwrap_or(0.0));
        let titles = std::array::from_fn(|m| match self.median_days_to_close_per_month[m] {
            Some(d) => format!(
                "{}: median {d:.1} days to close, {} answered",
                MONTHS[m], self.answered_per_month[m]
            ),
            None => format!("{}: none answered", MONTHS[m]),
        });
        bar_chart(&Chart {
            id: "chart-days-to-close",
            title: &format!("Median days to close per month in {}", self.year),
            desc: &format!(
                "Days from receipt to answer of the requests received each month and answered \
                 (complied with or denied); median {} days over the year. The figures are in the \
                 table below.",
                num(self.total.median_days_to_respond)
            ),
            colour: "#396",
            bars,
            titles,
        })
    }

    /// A standalone HTML document (for `--format html`).
    pub fn html(&self) -> String {
        let mut rows = String::new();
        for f in self.rights.iter().chain(std::iter::once(&self.total)) {
            let reasons = f
                .denied_by_reason
                .iter()
                .map(|(reason, n)| format!("{reason}: {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = write!(
                rows,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td></tr>",
                f.right,
                f.received,
                f.complied_in_whole,
                f.complied_in_part,
                f.denied,
                reasons,
                f.closed_otherwise,
                f.open,
                num(f.mean_days_to_respond),
                num(f.median_days_to_respond)
            );
        }
        let mut months = String::new();
        for m in self.months() {
            let _ = write!(
                months,
                "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td></tr>",
                m.month, m.received, m.answered, m.median_days_to_close
            );
        }
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Privacy \
             requests {year}</title></head><body><h1>Privacy requests received in {year}</h1>\
             <table><thead><tr><th>Right</th><th>Received</th><th>Complied in whole</th>\
             <th>Complied in part</th><th>Denied</th><th>Denied by reason</th>\
             <th>Closed otherwise</th><th>Open</th><th>Mean days</th><th>Median days</th></tr>\
             </thead><tbody>{rows}</tbody></table>{received}{days}\
             <table><thead><tr><th>Month</th><th>Received</th><th>Answered</th>\
             <th>Median days to close</th></tr></thead><tbody>{months}</tbody></table>\
             </body></html>\n",
            year = self.year,
            received = self.svg(),
            days = self.days_to_close_svg()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(right: &str, state: &str, code: Option<&str>, days: Option<i64>) -> ReportRow {
        let received_at = 1_767_225_600; // 2026-01-01
        ReportRow {
            right_name: right.into(),
            state: state.into(),
            decline_code: code.map(Into::into),
            received_at,
            closed_at: days.map(|d| received_at + d * 86_400),
        }
    }

    #[test]
    fn figures_add_up_and_medians_are_medians() {
        let rows = vec![
            row("access", "fulfilled", None, Some(2)),
            row("access", "partly_fulfilled", None, Some(4)),
            row("access", "declined", Some("not_found"), Some(9)),
            row("access", "in_progress", None, None),
            row("deletion", "unverifiable", None, Some(7)),
            row("deletion", "declined", Some("legal_exception"), Some(1)),
        ];
        let report = compute(2026, &rows);
        let access = &report.rights[0];
        assert_eq!(access.received, 4);
        assert_eq!(
            access.complied_in_whole + access.complied_in_part + access.denied + access.open,
            4
        );
        assert_eq!(access.median_days_to_respond, Some(4.0));
        assert_eq!(access.mean_days_to_respond, Some(5.0));
        assert_eq!(report.total.received, 6);
        assert_eq!(report.total.denied_by_reason.values().sum::<i64>(), 2);
        assert_eq!(report.per_month[0], 6);
        assert!(report.svg().starts_with("<svg"));
        // Answered: fulfilled 2, partly 4, declined 9 and 1 days; the unverifiable one is not.
        assert_eq!(report.answered_per_month[0], 4);
        assert_eq!(report.median_days_to_close_per_month[0], Some(3.0));
        assert_eq!(report.median_days_to_close_per_month[1], None);
        let chart = report.days_to_close_svg();
        assert!(chart.contains("<title id=\"chart-days-to-close-title\">"));
        assert!(chart.contains("January: median 3.0 days to close, 4 answered"));
        assert!(chart.contains("February: none answered"));
        assert_eq!(report.csv().lines().count(), 4);
    }
}
