//! Usage statistics (`GET /users/me/usage`): generations, credits and
//! images of a period, per day and per model, from the user's jobs.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::jobs::{self as q, JobStatus, UsageRow};
use crate::store::{Db, StoreResult, images};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Week,
    Month,
    /// The last 30 days (the studio's usage chart).
    #[serde(rename = "30d")]
    Days30,
}

impl Period {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            "30d" => Some(Period::Days30),
            _ => None,
        }
    }

    /// The first day of the period that ends `today` (UTC): today, the
    /// last seven days, this calendar month, or the last 30 days.
    pub fn start(self, today: NaiveDate) -> NaiveDate {
        match self {
            Period::Day => today,
            Period::Week => today - Duration::days(6),
            Period::Month => today.with_day(1).expect("day 1 exists"),
            Period::Days30 => today - Duration::days(29),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Summary {
    /// Completed generation jobs.
    pub total_generations: i64,
    /// Credits charged for jobs that ended in the period (completed, and
    /// running jobs cancelled).
    pub total_credits_used: i64,
    pub total_images_created: i64,
    /// All of the user's stored images, whatever their age.
    pub storage_used_bytes: i64,
    /// Generation requests accepted in the period.
    pub api_calls: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Day {
    pub date: NaiveDate,
    pub generations: i64,
    pub credits_used: i64,
    pub images_created: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct ByModel {
    pub model: String,
    pub generations: i64,
    pub credits_used: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Usage {
    #[schema(value_type = String)]
    pub period: Period,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub summary: Summary,
    /// Days with activity, newest first.
    pub daily: Vec<Day>,
    /// Models by credits used, most first.
    pub by_model: Vec<ByModel>,
}

/// Folds a user's jobs into the period's statistics.
pub fn summarise(period: Period, today: NaiveDate, rows: &[UsageRow], storage: i64) -> Usage {
    let start = period.start(today);
    let from: DateTime<Utc> = start.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    let mut summary = Summary {
        storage_used_bytes: storage,
        ..Summary::default()
    };
    let mut daily: BTreeMap<NaiveDate, Day> = BTreeMap::new();
    let mut models: BTreeMap<String, ByModel> = BTreeMap::new();
    for r in rows {
        if r.queued_at >= from {
            summary.api_calls += 1;
        }
        let Some(ended) = r.completed_at.filter(|t| *t >= from) else {
            continue;
        };
        let completed = r.status == JobStatus::Completed;
        let credits = r.credits_used.unwrap_or(0);
        let images = r
            .result_image_ids
            .as_deref()
            .and_then(|j| serde_json::from_str::<Vec<String>>(j).ok())
            .map_or(0, |v| v.len() as i64);
        let day = daily.entry(ended.date_naive()).or_insert_with(|| Day {
            date: ended.date_naive(),
            ..Day::default()
        });
        let model = models.entry(r.model.clone()).or_insert_with(|| ByModel {
            model: r.model.clone(),
            ..ByModel::default()
        });
        summary.total_credits_used += credits;
        day.credits_used += credits;
        model.credits_used += credits;
        if completed {
            summary.total_generations += 1;
            summary.total_images_created += images;
            day.generations += 1;
            day.images_created += images;
            model.generations += 1;
        }
    }
    let mut by_model: Vec<ByModel> = models.into_values().collect();
    by_model.sort_by(|a, b| {
        b.credits_used
            .cmp(&a.credits_used)
            .then(a.model.cmp(&b.model))
    });
    Usage {
        period,
        start_date: start,
        end_date: today,
        summary,
        daily: daily.into_values().rev().collect(),
        by_model,
    }
}

pub async fn usage(db: &Db, user_id: &str, period: Period) -> StoreResult<Usage> {
    let today = Utc::now().date_naive();
    let since = period
        .start(today)
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    let rows = q::usage_since(db, user_id, since).await?;
    let storage = images::storage_of_user(db, user_id).await?.total();
    Ok(summarise(period, today, &rows, storage))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, status: JobStatus, credits: i64, images: usize, at: &str) -> UsageRow {
        let t: DateTime<Utc> = at.parse().unwrap();
        UsageRow {
            model: model.into(),
            status,
            credits_used: Some(credits),
            result_image_ids: Some(serde_json::to_string(&vec!["i"; images]).unwrap()),
            queued_at: t,
            completed_at: Some(t),
        }
    }

    #[test]
    fn folds_jobs_by_day_and_model_within_the_period() {
        let today = NaiveDate::from_ymd_opt(2025, 11, 25).unwrap();
        let rows = vec![
            row("sdxl", JobStatus::Completed, 30, 2, "2025-11-25T10:00:00Z"),
            row("sdxl", JobStatus::Completed, 20, 1, "2025-11-24T10:00:00Z"),
            row("flux", JobStatus::Cancelled, 5, 0, "2025-11-24T11:00:00Z"),
            row("flux", JobStatus::Completed, 40, 1, "2025-10-31T23:00:00Z"),
        ];
        let u = summarise(Period::Month, today, &rows, 1234);
        assert_eq!(u.start_date, NaiveDate::from_ymd_opt(2025, 11, 1).unwrap());
        assert_eq!(
            u.summary,
            Summary {
                total_generations: 2,
                total_credits_used: 55,
                total_images_created: 3,
                storage_used_bytes: 1234,
                api_calls: 3,
            }
        );
        assert_eq!(u.daily.len(), 2);
        assert_eq!((u.daily[0].date.day(), u.daily[0].credits_used), (25, 30));
        assert_eq!((u.daily[1].generations, u.daily[1].credits_used), (1, 25));
        assert_eq!(u.by_model[0].model, "sdxl");
        assert_eq!(
            (u.by_model[1].model.as_str(), u.by_model[1].generations),
            ("flux", 0)
        );
        let day = summarise(Period::Day, today, &rows, 0);
        assert_eq!(day.summary.total_credits_used, 30);
        assert_eq!(
            Period::Week.start(today),
            NaiveDate::from_ymd_opt(2025, 11, 19).unwrap()
        );
        // The last 30 days reach back into October, past the month's start.
        let last30 = summarise(Period::Days30, today, &rows, 0);
        assert_eq!(
            last30.start_date,
            NaiveDate::from_ymd_opt(2025, 10, 27).unwrap()
        );
        assert_eq!(last30.summary.total_credits_used, 95);
        assert_eq!(Period::parse("30d"), Some(Period::Days30));
    }
}
