//! `/domain.json`, the domain-wide settings: today the membership
//! detector's (`membership`). The document exists only once a setting
//! differs from its default, so a domain that never set one has no such
//! document and older configurations read and write back unchanged.

use crate::membership::MembershipSettings;
use serde::{Deserialize, Serialize};

/// Domain-wide settings; every field has a default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainSettings {
    /// How agents probe each other and when a silent peer is FAILED.
    #[serde(default)]
    pub membership: MembershipSettings,
}

impl DomainSettings {
    /// Whether every setting is at its default (then `/domain.json` is left out).
    pub fn is_default(&self) -> bool {
        *self == DomainSettings::default()
    }
}

#[cfg(test)]
mod tests {
    use crate::model::paths;
    use crate::{Domain, DomainError};

    #[test]
    fn domain_json_is_read_written_back_and_left_out_at_defaults() {
        let empty = Domain::from_documents(Vec::<(&str, &[u8])>::new()).expect("empty domain");
        assert!(!empty.documents().contains_key(paths::DOMAIN));

        let text = br#"{"membership":{"probe_interval":"300ms"}}"#;
        let domain = Domain::from_documents([(paths::DOMAIN, &text[..])]).expect("valid");
        assert_eq!(domain.settings.membership.probe_interval.as_millis(), 300);
        assert_eq!(
            domain.settings.membership.failure_threshold.as_millis(),
            800
        );
        let written = domain.documents();
        let again = Domain::from_documents(written.iter().map(|(p, d)| (p.as_str(), &d[..])))
            .expect("written documents read back");
        assert_eq!(again, domain);
        assert_eq!(domain.validate(), vec![]);
    }

    #[test]
    fn bad_domain_settings_are_refused_with_the_reason() {
        let unknown = br#"{"membership":{"probe":"1s"}}"#;
        let err = Domain::from_documents([(paths::DOMAIN, &unknown[..])]).expect_err("unknown");
        assert!(matches!(err, DomainError::DocumentInvalid { .. }), "{err}");

        let short = br#"{"membership":{"probe_interval":"200ms","failure_threshold":"100ms"}}"#;
        let domain = Domain::from_documents([(paths::DOMAIN, &short[..])]).expect("readable");
        let problems = domain.validate();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].to_string().contains("failure_threshold 100ms"),
            "{}",
            problems[0]
        );
    }
}
