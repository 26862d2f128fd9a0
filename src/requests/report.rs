//! The yearly request report (R10): per right, requests received, complied with in whole or in
//! part, denied (by reason), closed otherwise, still open, and the mean and median days to
//! respond; plus an SVG chart of requests per month. Figures only, no personal data.

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
}

fn days(row: &ReportRow) -> Option<f64> {
    let closed = row.closed_at?;
    Some(((closed - row.received_at).max(0)) as f64 / 86_400.0)
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
        if matches!(
            row.state.as_str(),
            "fulfilled" | "partly_fulfilled" | "declined" | "appeal_upheld"
        ) && let Some(d) = days(row)
        {
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
    for row in rows {
        by_right.entry(&row.right_name).or_default().push(row);
        let month = super::day_of(row.received_at).month() as usize;
        per_month[month - 1] += 1;
    }
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

    /// Requests received per month as a bar chart (inline SVG, no script).
    pub fn svg(&self) -> String {
        let max = self.per_month.iter().copied().max().unwrap_or(0).max(1);
        let mut svg = String::from(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 480 200\" width=\"480\" \
             height=\"200\" role=\"img\" aria-label=\"Requests received per month\">",
        );
        const MONTHS: [&str; 12] = ["J", "F", "M", "A", "M", "J", "J", "A", "S", "O", "N", "D"];
        for (i, n) in self.per_month.iter().enumerate() {
            let height = (*n as f64 / max as f64 * 160.0).round();
            let x = 10 + i * 39;
            let _ = write!(
                svg,
                "<rect x=\"{x}\" y=\"{}\" width=\"30\" height=\"{height}\" fill=\"#36c\">\
                 <title>{n}</title></rect><text x=\"{}\" y=\"195\" font-size=\"12\" \
                 text-anchor=\"middle\">{}</text>",
                170.0 - height,
                x + 15,
                MONTHS[i]
            );
        }
        svg.push_str("</svg>");
        svg
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
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Privacy \
             requests {year}</title></head><body><h1>Privacy requests received in {year}</h1>\
             <table><thead><tr><th>Right</th><th>Received</th><th>Complied in whole</th>\
             <th>Complied in part</th><th>Denied</th><th>Denied by reason</th>\
             <th>Closed otherwise</th><th>Open</th><th>Mean days</th><th>Median days</th></tr>\
             </thead><tbody>{rows}</tbody></table>{svg}</body></html>\n",
            year = self.year,
            svg = self.svg()
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
        assert_eq!(report.csv().lines().count(), 4);
    }
}
