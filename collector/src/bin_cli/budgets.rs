//! Budgets: the file, the evaluation interval and where alerts go.

use anyhow::Context;

use super::ledger_args::LedgerArgs;

impl LedgerArgs {
    /// Budgets from `--budgets`, the evaluation interval and the notifiers; a bad file is an error naming it.
    pub(crate) fn budget_config(&self) -> anyhow::Result<gpucost_collector::budget::engine::BudgetConfig> {
        use gpucost_collector::budget::notify::Notifier;
        let mut c =
            gpucost_collector::budget::engine::BudgetConfig { every: self.budget_eval_interval, ..Default::default() };
        anyhow::ensure!(!c.every.is_zero(), "--budget-eval-interval must be more than zero");
        if let Some(path) = &self.budgets {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading --budgets {}", path.display()))?;
            c.from_file = gpucost_rules::budget_spec::from_toml(&path.display().to_string(), &text)
                .map_err(anyhow::Error::msg)?;
            c.rules =
                gpucost_rules::alert_spec::from_toml(&path.display().to_string(), &text).map_err(anyhow::Error::msg)?;
            c.file = Some(path.display().to_string());
        }
        let url = |flag: &str, u: &str| -> anyhow::Result<String> {
            anyhow::ensure!(
                u.starts_with("http://") || u.starts_with("https://"),
                "{flag}: {u:?} is not an http(s) URL"
            );
            Ok(u.to_string())
        };
        if let Some(u) = &self.alert_slack_webhook {
            c.notifiers.push(Notifier::Slack { url: url("--alert-slack-webhook", u)? });
        }
        if let (Some(u), Some(secret)) = (&self.alert_webhook, &self.alert_webhook_secret) {
            anyhow::ensure!(secret.len() >= 16, "--alert-webhook-secret: use at least 16 characters");
            c.notifiers.push(Notifier::Webhook { url: url("--alert-webhook", u)?, secret: secret.clone() });
        }
        if let Some(u) = &self.alertmanager_url {
            c.notifiers.push(Notifier::Alertmanager { url: url("--alertmanager-url", u)? });
        }
        Ok(c)
    }
}
