//! Evaluation on a labelled corpus: ROC AUC, true-positive rates at fixed false-positive rates, per attack
//! class, and how many attempts a campaign makes before its first flag.

use std::collections::BTreeMap;
use std::fmt;

/// Scores collected while the engine learns through a corpus.
#[derive(Debug, Default)]
pub struct Evaluation {
    benign: Vec<f32>,
    /// Per attack class: every attack event's score.
    attacks: BTreeMap<String, Vec<f32>>,
    /// Per campaign: its class and its events' scores in order.
    campaigns: BTreeMap<String, (String, Vec<f32>)>,
}

/// The false-positive rates reported.
pub const FPRS: [f64; 2] = [0.01, 0.001];

impl Evaluation {
    /// Records one scored event. `label` is `None` (or `"benign"`) for benign events.
    pub fn record(&mut self, score: f32, label: Option<&str>, campaign: Option<&str>) {
        match label.filter(|l| *l != "benign") {
            None => self.benign.push(score),
            Some(class) => {
                self.attacks.entry(class.to_owned()).or_default().push(score);
                if let Some(campaign) = campaign {
                    let entry =
                        self.campaigns.entry(campaign.to_owned()).or_insert_with(|| (class.to_owned(), Vec::new()));
                    entry.1.push(score);
                }
            }
        }
    }

    /// The results, or `None` without both benign and attack events.
    pub fn report(&self) -> Option<Report> {
        let attack: Vec<f32> = self.attacks.values().flatten().copied().collect();
        if self.benign.is_empty() || attack.is_empty() {
            return None;
        }
        let mut benign = self.benign.clone();
        benign.sort_by(f32::total_cmp);
        let thresholds = FPRS.map(|fpr| threshold(&benign, fpr));
        let rate = |scores: &[f32], t: f32| scores.iter().filter(|&&s| s > t).count() as f64 / scores.len() as f64;
        let mut classes = Vec::new();
        for (class, scores) in &self.attacks {
            let mut first_flags: Vec<usize> = Vec::new();
            let mut missed = 0;
            for (c, scores) in self.campaigns.values() {
                if c != class {
                    continue;
                }
                match scores.iter().position(|&s| s > thresholds[0]) {
                    Some(i) => first_flags.push(i + 1),
                    None => missed += 1,
                }
            }
            first_flags.sort_unstable();
            classes.push(ClassReport {
                class: class.clone(),
                events: scores.len(),
                auc: auc(&benign, scores),
                tpr: thresholds.map(|t| rate(scores, t)),
                campaigns: first_flags.len() + missed,
                missed_campaigns: missed,
                median_first_flag: first_flags.get(first_flags.len() / 2).copied(),
                worst_first_flag: first_flags.last().copied(),
            });
        }
        Some(Report {
            benign: benign.len(),
            attack: attack.len(),
            auc: auc(&benign, &attack),
            thresholds,
            fpr: thresholds.map(|t| rate(&benign, t)),
            tpr: thresholds.map(|t| rate(&attack, t)),
            classes,
        })
    }
}

/// The lowest score above which at most `fpr` of the benign scores lie (flagged means `score > threshold`).
fn threshold(sorted_benign: &[f32], fpr: f64) -> f32 {
    let allowed = (sorted_benign.len() as f64 * fpr).floor() as usize;
    let index = sorted_benign.len().saturating_sub(allowed + 1);
    sorted_benign[index]
}

/// ROC AUC: the chance that a random attack event outscores a random benign one (ties count half).
fn auc(sorted_benign: &[f32], attack: &[f32]) -> f64 {
    let mut wins = 0.0;
    for &s in attack {
        let below = sorted_benign.partition_point(|&b| b < s);
        let not_above = sorted_benign.partition_point(|&b| b <= s);
        wins += below as f64 + (not_above - below) as f64 / 2.0;
    }
    wins / (attack.len() as f64 * sorted_benign.len() as f64)
}

/// The whole evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub benign: usize,
    pub attack: usize,
    pub auc: f64,
    /// The score thresholds at 1 % and 0.1 % false positives, and the false-positive rates they give.
    pub thresholds: [f32; 2],
    pub fpr: [f64; 2],
    pub tpr: [f64; 2],
    pub classes: Vec<ClassReport>,
}

/// One attack class.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassReport {
    pub class: String,
    pub events: usize,
    pub auc: f64,
    pub tpr: [f64; 2],
    pub campaigns: usize,
    /// Campaigns never flagged at the 1 % threshold.
    pub missed_campaigns: usize,
    /// Attempts (events) into a campaign until its first flag at the 1 % threshold.
    pub median_first_flag: Option<usize>,
    pub worst_first_flag: Option<usize>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "events: {} benign, {} attack", self.benign, self.attack)?;
        writeln!(f, "ROC AUC (all attacks against benign): {:.4}", self.auc)?;
        for (i, target) in FPRS.iter().enumerate() {
            writeln!(
                f,
                "at {:.1} % false positives (threshold {:.4}, measured {:.2} %): true-positive rate {:.1} %",
                target * 100.0,
                self.thresholds[i],
                self.fpr[i] * 100.0,
                self.tpr[i] * 100.0
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "| attack | events | campaigns | ROC AUC | TPR @ 1 % FPR | TPR @ 0.1 % FPR | first flag (median / worst attempt) | campaigns missed |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
        for c in &self.classes {
            let flag = |n: Option<usize>| n.map_or("-".to_owned(), |n| n.to_string());
            writeln!(
                f,
                "| {} | {} | {} | {:.4} | {:.1} % | {:.1} % | {} / {} | {} |",
                c.class,
                c.events,
                c.campaigns,
                c.auc,
                c.tpr[0] * 100.0,
                c.tpr[1] * 100.0,
                flag(c.median_first_flag),
                flag(c.worst_first_flag),
                c.missed_campaigns
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_and_rates_on_a_known_case() {
        let mut evaluation = Evaluation::default();
        for i in 0..1000 {
            evaluation.record(i as f32 / 1000.0, None, None);
        }
        // Half the attacks above every benign score, half in the middle.
        for i in 0..10 {
            evaluation.record(2.0, Some("a"), Some("a-1"));
            evaluation.record(0.5 + i as f32 / 10_000.0, Some("b"), Some(&format!("b-{i}")));
        }
        let report = evaluation.report().unwrap();
        let a = &report.classes[0];
        let b = &report.classes[1];
        assert_eq!(a.auc, 1.0);
        assert!((b.auc - 0.5005).abs() < 0.001, "{}", b.auc);
        assert!((report.auc - 0.75).abs() < 0.001, "{}", report.auc);
        assert_eq!(report.fpr[0], 0.01);
        assert_eq!(a.tpr, [1.0, 1.0]);
        assert_eq!(b.tpr, [0.0, 0.0]);
        assert_eq!((a.campaigns, a.missed_campaigns, a.median_first_flag), (1, 0, Some(1)));
        assert_eq!((b.campaigns, b.missed_campaigns), (10, 10));
        assert!(report.to_string().contains("| a | 10 | 1 | 1.0000 | 100.0 % |"));
    }

    #[test]
    fn ties_at_the_threshold_are_not_flagged() {
        let mut evaluation = Evaluation::default();
        for _ in 0..100 {
            evaluation.record(0.5, None, None);
        }
        evaluation.record(0.5, Some("a"), None);
        let report = evaluation.report().unwrap();
        assert_eq!(report.fpr[0], 0.0);
        assert_eq!(report.tpr[0], 0.0);
        assert_eq!(report.auc, 0.5);
    }

    #[test]
    fn no_report_without_both_kinds() {
        let mut evaluation = Evaluation::default();
        evaluation.record(0.1, None, None);
        assert!(evaluation.report().is_none());
    }
}
