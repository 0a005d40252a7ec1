//! The submission workflow: who may move a submission where, and the record
//! of every move.
//!
//! ```text
//! Draft ──developer──▶ Submitted ──reviewer──▶ InReview ──reviewer──▶ Testing ──reviewer──▶ Approved ──admin──▶ Published
//!   ▲ ▲                    │                     │                      │
//!   │ └──developer (withdraw)                    │                      │
//!   └──────────developer────────── Rejected ◀────┴──────reviewer────────┘
//! ```
//!
//! A submission pins the SHA-256 of the package it was submitted with:
//! reviewers always see that exact package, and a new package means a new
//! submission. Automated review errors block the move to Approved.

use serde::{Deserialize, Serialize};
use vodo_core::Timestamp;

use crate::review::Report;

/// Where a submission stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Being prepared by the developer.
    Draft,
    /// Waiting for a reviewer.
    Submitted,
    /// A reviewer is looking at it.
    InReview,
    /// Running in the test environment.
    Testing,
    /// Passed review; waiting to be published.
    Approved,
    /// In the catalog.
    Published,
    /// Sent back with feedback.
    Rejected,
}

/// Who acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The partner who builds the plugin.
    Developer,
    /// Marketplace staff who review.
    Reviewer,
    /// Marketplace staff who publish.
    Admin,
}

/// One actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Their id.
    pub id: String,
    /// Their role.
    pub role: Role,
}

/// One recorded move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// From.
    pub from: State,
    /// To.
    pub to: State,
    /// Who.
    pub by: String,
    /// In which role.
    pub role: Role,
    /// When.
    pub at: Timestamp,
    /// Why (required for rejections).
    pub reason: String,
}

/// Why a move was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    /// No such move exists.
    #[error("a submission cannot go from {from:?} to {to:?}")]
    NotAllowed {
        /// From.
        from: State,
        /// To.
        to: State,
    },
    /// The move exists, but not for this role.
    #[error("only a {needed:?} may move a submission from {from:?} to {to:?}")]
    WrongRole {
        /// From.
        from: State,
        /// To.
        to: State,
        /// The role that may.
        needed: Role,
    },
    /// A rejection needs feedback for the developer.
    #[error("a rejection needs a reason the developer can act on")]
    ReasonRequired,
    /// The automated review found errors.
    #[error("the automated review found {0} error(s): fix them before approval")]
    BlockedByReview(usize),
    /// No automated review report yet.
    #[error("the automated review has not run on this package yet")]
    NotReviewed,
    /// A developer tried to move another developer's submission.
    #[error(
        "`{actor}` is not the developer of this submission (`{owner}` is); only its owner may move it"
    )]
    NotOwner {
        /// Who tried.
        actor: String,
        /// Who owns it.
        owner: String,
    },
}

/// The role that may make a move, if the move exists.
fn rule(from: State, to: State) -> Option<Role> {
    use State::*;
    Some(match (from, to) {
        (Draft, Submitted) | (Submitted, Draft) | (Rejected, Draft) => Role::Developer,
        (Submitted, InReview)
        | (InReview, Testing)
        | (InReview, Rejected)
        | (Testing, Approved)
        | (Testing, Rejected) => Role::Reviewer,
        (Approved, Published) => Role::Admin,
        _ => return None,
    })
}

/// A plugin version on its way into the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// Stable id.
    pub id: String,
    /// The developer who owns it; only they make the developer's moves.
    pub owner: String,
    /// When the draft was made.
    pub created: Timestamp,
    /// The plugin's slug.
    pub plugin: String,
    /// The version submitted.
    pub version: String,
    /// SHA-256 of the exact package under review.
    pub package_sha256: String,
    /// Where it stands.
    pub state: State,
    /// Every move, oldest first.
    pub history: Vec<Transition>,
    /// The automated review of this package.
    pub report: Option<Report>,
}

impl Submission {
    /// A new draft of `owner`'s package, made at `created`.
    pub fn new(
        id: &str,
        owner: &str,
        plugin: &str,
        version: &str,
        package_sha256: &str,
        created: Timestamp,
    ) -> Self {
        Self {
            id: id.into(),
            owner: owner.into(),
            created,
            plugin: plugin.into(),
            version: version.into(),
            package_sha256: package_sha256.into(),
            state: State::Draft,
            history: Vec::new(),
            report: None,
        }
    }

    /// Moves the submission to `to` as `actor`, recording who, when and why.
    /// An admin may make any reviewer's move; a developer's moves are the
    /// owner's alone.
    pub fn transition(
        &mut self,
        to: State,
        actor: &Actor,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), WorkflowError> {
        let from = self.state;
        let needed = rule(from, to).ok_or(WorkflowError::NotAllowed { from, to })?;
        let permitted =
            actor.role == needed || (actor.role == Role::Admin && needed == Role::Reviewer);
        if !permitted {
            return Err(WorkflowError::WrongRole { from, to, needed });
        }
        if needed == Role::Developer && actor.id != self.owner {
            return Err(WorkflowError::NotOwner {
                actor: actor.id.clone(),
                owner: self.owner.clone(),
            });
        }
        if to == State::Rejected && reason.trim().is_empty() {
            return Err(WorkflowError::ReasonRequired);
        }
        if to == State::Approved {
            let report = self.report.as_ref().ok_or(WorkflowError::NotReviewed)?;
            let errors = report.errors().count();
            if errors > 0 {
                return Err(WorkflowError::BlockedByReview(errors));
            }
        }
        self.state = to;
        self.history.push(Transition {
            from,
            to,
            by: actor.id.clone(),
            role: actor.role,
            at: now,
            reason: reason.trim().to_owned(),
        });
        Ok(())
    }

    /// The feedback of the latest rejection, if the submission is rejected.
    pub fn feedback(&self) -> Option<&str> {
        (self.state == State::Rejected)
            .then(|| self.history.last().map(|t| t.reason.as_str()))
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::{Finding, Severity};

    const ALL: [State; 7] = [
        State::Draft,
        State::Submitted,
        State::InReview,
        State::Testing,
        State::Approved,
        State::Published,
        State::Rejected,
    ];

    fn actor(role: Role) -> Actor {
        Actor {
            id: format!("{role:?}-1"),
            role,
        }
    }

    fn clean() -> Report {
        Report {
            findings: vec![Finding {
                check: "compatibility".into(),
                severity: Severity::Warning,
                location: "x".into(),
                message: "y".into(),
            }],
        }
    }

    #[test]
    fn every_transition_is_allowed_or_refused_as_the_table_says() {
        use State::*;
        let allowed: &[(State, State, Role)] = &[
            (Draft, Submitted, Role::Developer),
            (Submitted, Draft, Role::Developer),
            (Submitted, InReview, Role::Reviewer),
            (InReview, Testing, Role::Reviewer),
            (InReview, Rejected, Role::Reviewer),
            (Testing, Approved, Role::Reviewer),
            (Testing, Rejected, Role::Reviewer),
            (Approved, Published, Role::Admin),
            (Rejected, Draft, Role::Developer),
        ];
        for from in ALL {
            for to in ALL {
                for role in [Role::Developer, Role::Reviewer, Role::Admin] {
                    let mut s =
                        Submission::new("s1", "Developer-1", "p", "1.0.0", "abc", Timestamp(0));
                    s.state = from;
                    s.report = Some(clean());
                    let result = s.transition(to, &actor(role), "because", Timestamp(7));
                    let rule = allowed.iter().find(|(f, t, _)| *f == from && *t == to);
                    let expect_ok = rule.is_some_and(|(_, _, needed)| {
                        *needed == role || (role == Role::Admin && *needed == Role::Reviewer)
                    });
                    assert_eq!(
                        result.is_ok(),
                        expect_ok,
                        "{from:?} -> {to:?} as {role:?}: {result:?}"
                    );
                    if expect_ok {
                        assert_eq!(s.state, to);
                        let t = s.history.last().unwrap();
                        assert_eq!(
                            (t.from, t.to, t.role, t.at, t.reason.as_str()),
                            (from, to, role, Timestamp(7), "because")
                        );
                    } else {
                        assert_eq!(s.state, from, "a refused move changes nothing");
                        assert!(s.history.is_empty());
                        let e = result.unwrap_err();
                        match rule {
                            None => assert_eq!(e, WorkflowError::NotAllowed { from, to }),
                            Some((_, _, needed)) => assert_eq!(
                                e,
                                WorkflowError::WrongRole {
                                    from,
                                    to,
                                    needed: *needed
                                }
                            ),
                        }
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// Any sequence of attempted moves, by anyone, keeps the submission
        /// consistent: refused moves change nothing, the history chains
        /// from Draft to the current state, and nothing is published that
        /// was not approved with a clean report.
        #[test]
        fn random_move_sequences_keep_the_submission_consistent(
            moves in proptest::collection::vec((0usize..100, 0usize..4, proptest::bool::ANY), 0..80),
            clean_report in proptest::bool::ANY,
        ) {
            let actors = [
                Actor { id: "owner".into(), role: Role::Developer },
                Actor { id: "stranger".into(), role: Role::Developer },
                actor(Role::Reviewer),
                actor(Role::Admin),
            ];
            let mut s = Submission::new("s", "owner", "p", "1.0.0", "abc", Timestamp(0));
            if clean_report {
                s.report = Some(clean());
            }
            let mut published = false;
            for (pick, who, with_reason) in moves {
                // Mostly a move the table has from here (so long paths are
                // walked), sometimes any move at all.
                let exits: Vec<State> =
                    ALL.into_iter().filter(|to| rule(s.state, *to).is_some()).collect();
                let to = if pick < 70 && !exits.is_empty() {
                    exits[pick % exits.len()]
                } else {
                    ALL[pick % ALL.len()]
                };
                let before = s.clone();
                let reason = if with_reason { "because" } else { "" };
                match s.transition(to, &actors[who], reason, Timestamp(1)) {
                    Ok(()) => {
                        proptest::prop_assert_eq!(s.history.len(), before.history.len() + 1);
                        proptest::prop_assert!(rule(before.state, to).is_some());
                        published |= to == State::Published;
                    }
                    Err(_) => proptest::prop_assert_eq!(&s, &before),
                }
            }
            let mut at = State::Draft;
            for t in &s.history {
                proptest::prop_assert_eq!(t.from, at);
                at = t.to;
            }
            proptest::prop_assert_eq!(at, s.state);
            if published {
                proptest::prop_assert!(clean_report);
                proptest::prop_assert!(s.history.iter().any(|t| t.to == State::Approved));
            }
            for t in s.history.iter().filter(|t| t.role == Role::Developer) {
                proptest::prop_assert_eq!(t.by.as_str(), "owner");
            }
            for t in s.history.iter().filter(|t| t.to == State::Rejected) {
                proptest::prop_assert!(!t.reason.is_empty());
            }
        }
    }

    #[test]
    fn only_the_owner_makes_the_developer_moves() {
        let mut s = Submission::new("s1", "alice", "p", "1.0.0", "abc", Timestamp(0));
        let mallory = Actor {
            id: "mallory".into(),
            role: Role::Developer,
        };
        assert_eq!(
            s.transition(State::Submitted, &mallory, "", Timestamp(1)),
            Err(WorkflowError::NotOwner {
                actor: "mallory".into(),
                owner: "alice".into()
            })
        );
        assert_eq!(s.state, State::Draft);
        let alice = Actor {
            id: "alice".into(),
            role: Role::Developer,
        };
        s.transition(State::Submitted, &alice, "", Timestamp(1))
            .unwrap();
        // Reviewers' moves are not tied to the owner.
        s.transition(State::InReview, &actor(Role::Reviewer), "", Timestamp(2))
            .unwrap();
    }

    #[test]
    fn rejections_need_a_reason_and_review_errors_block_approval() {
        let mut s = Submission::new("s1", "Developer-1", "p", "1.0.0", "abc", Timestamp(0));
        s.state = State::InReview;
        assert_eq!(
            s.transition(State::Rejected, &actor(Role::Reviewer), "  ", Timestamp(1)),
            Err(WorkflowError::ReasonRequired)
        );
        s.transition(
            State::Rejected,
            &actor(Role::Reviewer),
            "the icon is missing",
            Timestamp(1),
        )
        .unwrap();
        assert_eq!(s.feedback(), Some("the icon is missing"));
        s.transition(State::Draft, &actor(Role::Developer), "", Timestamp(2))
            .unwrap();
        assert_eq!(s.feedback(), None);

        let mut s = Submission::new("s2", "Developer-1", "p", "1.0.0", "abc", Timestamp(0));
        s.state = State::Testing;
        assert_eq!(
            s.transition(State::Approved, &actor(Role::Reviewer), "", Timestamp(1)),
            Err(WorkflowError::NotReviewed)
        );
        let mut bad = clean();
        bad.findings.push(Finding {
            check: "license".into(),
            severity: Severity::Error,
            location: "x".into(),
            message: "GPL".into(),
        });
        s.report = Some(bad);
        assert_eq!(
            s.transition(State::Approved, &actor(Role::Admin), "", Timestamp(1)),
            Err(WorkflowError::BlockedByReview(1))
        );
        s.report = Some(clean());
        s.transition(State::Approved, &actor(Role::Reviewer), "", Timestamp(1))
            .unwrap();
    }
}
