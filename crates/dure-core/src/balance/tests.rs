//! Tests of the pool as the proxy uses it: distributions per policy,
//! backups, availability inputs, live updates.

use super::*;
use proptest::prelude::*;
use std::collections::HashMap;
use std::time::Duration;

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn a_pool_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Pool>();
}

/// A pool of serving members `(name, weight, backup)`.
fn pool(policy: Policy, members: &[(&str, u32, bool)]) -> Pool {
    let mut pool = Pool::new(PoolConfig {
        policy,
        ..PoolConfig::default()
    })
    .unwrap();
    let specs: Vec<MemberSpec> = members
        .iter()
        .map(|(name, weight, backup)| {
            let spec = MemberSpec::new(*name).weight(*weight);
            if *backup {
                spec.backup()
            } else {
                spec
            }
        })
        .collect();
    pool.update(&specs).unwrap();
    for spec in &specs {
        pool.set_state(&spec.name, MemberState::Serving).unwrap();
    }
    pool
}

fn name(pool: &Pool, id: MemberId) -> String {
    pool.name(id).unwrap().to_string()
}

/// Picks `n` times at time zero, each request begun and ended at once.
fn picks(pool: &mut Pool, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let id = pool.pick(&PickContext::at(Duration::ZERO)).unwrap();
            name(pool, id)
        })
        .collect()
}

fn counts(names: &[String]) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for name in names {
        *counts.entry(name.as_str()).or_insert(0) += 1;
    }
    counts
}

/// A small xorshift generator: seeded, so a failure replays.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn round_robin_gives_exact_weights_well_interleaved() {
    let mut pool = pool(
        Policy::RoundRobin,
        &[("a", 5, false), ("b", 1, false), ("c", 1, false)],
    );
    let names = picks(&mut pool, 7000);
    let counts = counts(&names);
    assert_eq!(counts["a"], 5000);
    assert_eq!(counts["b"], 1000);
    assert_eq!(counts["c"], 1000);
    // b and c never follow themselves, a never runs more than 4 (the seam
    // of two periods, a a b a c a a | a a b …).
    let mut run = 1;
    for pair in names.windows(2) {
        run = if pair[0] == pair[1] { run + 1 } else { 1 };
        assert!(run <= 4, "{pair:?}");
        if pair[0] != "a" {
            assert_ne!(pair[0], pair[1]);
        }
    }
}

#[test]
fn every_server_weight_reaches_the_pool_as_it_is() {
    // 1000 and 999 share no divisor: the longest period there is for two.
    let mut pool = pool(
        Policy::RoundRobin,
        &[
            ("a", MAX_WEIGHT, false),
            ("b", 999, false),
            ("c", 500, false),
        ],
    );
    let names = picks(&mut pool, 2 * 2499);
    let counts = counts(&names);
    assert_eq!((counts["a"], counts["b"], counts["c"]), (2000, 1998, 1000));
    assert_eq!(MAX_WEIGHT, crate::model::MAX_WEIGHT);
}

#[test]
fn random_follows_the_weights_within_a_tolerance() {
    let mut pool = pool(
        Policy::Random,
        &[("a", 5, false), ("b", 1, false), ("c", 1, false)],
    );
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let total = 70_000;
    let mut names = Vec::with_capacity(total);
    for _ in 0..total {
        let ctx = PickContext {
            random: rng.next(),
            ..PickContext::at(Duration::ZERO)
        };
        let id = pool.pick(&ctx).unwrap();
        names.push(name(&pool, id));
    }
    let counts = counts(&names);
    for (member, share) in [("a", 5.0 / 7.0), ("b", 1.0 / 7.0), ("c", 1.0 / 7.0)] {
        let got = counts[member] as f64 / total as f64;
        assert!((got - share).abs() < 0.01, "{member}: {got} vs {share}");
    }
}

#[test]
fn least_conn_prefers_the_least_loaded_relative_to_weight() {
    let mut pool = pool(
        Policy::LeastConn,
        &[("a", 2, false), ("b", 1, false), ("c", 1, false)],
    );
    let now = Duration::ZERO;
    let [a, b, c] = ["a", "b", "c"].map(|n| pool.id(n).unwrap());
    // a: 2 in flight over weight 2 = 1; b: 2 over 1; c: 1 over 1.
    for id in [a, a, b, b, c] {
        pool.begin(id);
    }
    // a and c tie at 1: both get a turn before either gets a second.
    let first = pool.pick(&PickContext::at(now)).unwrap();
    let second = pool.pick(&PickContext::at(now)).unwrap();
    let mut tied = [name(&pool, first), name(&pool, second)];
    tied.sort();
    assert_eq!(tied, ["a", "c"]);
    pool.begin(c);
    // a: 1, b: 2, c: 2.
    assert_eq!(pool.pick(&PickContext::at(now)), Some(a));
    for _ in 0..2 {
        pool.end(b, Outcome::Success, now);
    }
    // b is idle now.
    assert_eq!(pool.pick(&PickContext::at(now)), Some(b));
}

#[test]
fn least_conn_with_equal_loads_takes_turns() {
    let mut pool = pool(
        Policy::LeastConn,
        &[("a", 1, false), ("b", 3, false), ("c", 1, false)],
    );
    let names = picks(&mut pool, 300);
    let counts = counts(&names);
    assert_eq!((counts["a"], counts["b"], counts["c"]), (100, 100, 100));
}

#[test]
fn backups_take_requests_only_while_no_primary_is_available() {
    for policy in [
        Policy::RoundRobin,
        Policy::Random,
        Policy::LeastConn,
        Policy::IpHash,
    ] {
        let mut pool = pool(
            policy,
            &[("p1", 1, false), ("p2", 1, false), ("b1", 1, true)],
        );
        let mut rng = XorShift(7);
        let mut pick_names = |pool: &mut Pool, now: Duration| -> Vec<String> {
            (0..200u32)
                .map(|i| {
                    let key = i.to_be_bytes();
                    let ctx = PickContext {
                        random: rng.next(),
                        client_key: &key,
                        ..PickContext::at(now)
                    };
                    let id = pool.pick(&ctx).unwrap();
                    name(pool, id)
                })
                .collect()
        };
        let names = pick_names(&mut pool, Duration::ZERO);
        assert!(names.iter().all(|n| n != "b1"), "{policy}");
        // p1 out by the controller, p2 by its health checks.
        pool.set_state("p1", MemberState::Out).unwrap();
        let p2 = pool.id("p2").unwrap();
        pool.record_check(p2, false);
        assert!(pick_names(&mut pool, Duration::ZERO)
            .iter()
            .any(|n| n == "p2"));
        assert_eq!(pool.record_check(p2, false), Some(false));
        let names = pick_names(&mut pool, Duration::ZERO);
        assert!(names.iter().all(|n| n == "b1"), "{policy}: {names:?}");
        // p2 back: the backup is left at once.
        pool.record_check(p2, true);
        pool.record_check(p2, true);
        let names = pick_names(&mut pool, Duration::ZERO);
        assert!(names.iter().all(|n| n == "p2"), "{policy}: {names:?}");
        // Nothing available at all: no pick.
        pool.set_state("p2", MemberState::Out).unwrap();
        pool.set_state("b1", MemberState::Out).unwrap();
        assert_eq!(pool.pick(&PickContext::at(Duration::ZERO)), None);
    }
}

#[test]
fn a_draining_member_takes_no_new_requests_but_stays_sticky_until_its_deadline() {
    let mut pool = pool(Policy::RoundRobin, &[("a", 1, false), ("b", 1, false)]);
    let a = pool.id("a").unwrap();
    pool.set_state(
        "a",
        MemberState::Draining {
            deadline: 30 * SECOND,
        },
    )
    .unwrap();
    assert!(picks(&mut pool, 10).iter().all(|n| n == "b"));
    assert_eq!(pool.availability(a, 29 * SECOND), Availability::StickyOnly);
    assert_eq!(pool.availability(a, 30 * SECOND), Availability::Unavailable);
}

#[test]
fn a_failure_streak_ejects_for_a_time_and_the_member_comes_back_after_it() {
    let mut pool = pool(
        Policy::RoundRobin,
        &[("a", 1, false), ("b", 1, false), ("c", 1, false)],
    );
    let a = pool.id("a").unwrap();
    let base = OutlierConfig::default().base_ejection_time.0;
    let now = SECOND;
    for _ in 0..2 {
        pool.begin(a);
        assert_eq!(pool.end(a, Outcome::ConnectFailed, now), None);
    }
    pool.begin(a);
    let ejection = pool.end(a, Outcome::ConnectFailed, now).unwrap();
    assert_eq!(ejection.until, now + base);
    let names: Vec<String> = (0..20)
        .map(|_| {
            let id = pool.pick(&PickContext::at(now + base / 2)).unwrap();
            name(&pool, id)
        })
        .collect();
    assert!(names.iter().all(|n| n != "a"));
    let view = pool.member(a, now).unwrap();
    assert_eq!(view.ejected_until, Some(now + base));
    assert_eq!(view.availability, Availability::Unavailable);
    // At its time the ejection is over, with no call but the pick.
    let names: Vec<String> = (0..3)
        .map(|_| {
            let id = pool.pick(&PickContext::at(now + base)).unwrap();
            name(&pool, id)
        })
        .collect();
    assert!(names.iter().any(|n| n == "a"), "{names:?}");
}

#[test]
fn passive_signals_never_eject_more_than_half_the_members() {
    let mut pool = pool(Policy::RoundRobin, &[("a", 1, false), ("b", 1, false)]);
    let now = SECOND;
    let [a, b] = ["a", "b"].map(|n| pool.id(n).unwrap());
    pool.begin(a);
    assert!(pool.end(a, Outcome::Timeout, now).is_some());
    pool.begin(b);
    assert_eq!(pool.end(b, Outcome::Timeout, now), None);
    assert_eq!(pool.availability(b, now), Availability::Available);
    assert!(picks(&mut pool, 5).iter().all(|n| n == "b"));
}

#[test]
fn a_member_back_from_out_is_a_new_process_with_a_clean_record() {
    let mut pool = pool(Policy::RoundRobin, &[("a", 1, false), ("b", 1, false)]);
    let now = SECOND;
    let a = pool.id("a").unwrap();
    pool.begin(a);
    assert!(pool.end(a, Outcome::Timeout, now).is_some());
    pool.record_check(a, false);
    pool.record_check(a, false);
    pool.set_state("a", MemberState::Out).unwrap();
    pool.set_state("a", MemberState::Serving).unwrap();
    let view = pool.member(a, now).unwrap();
    assert!(view.healthy);
    assert_eq!(view.ejected_until, None);
    assert_eq!(view.availability, Availability::Available);
}

#[test]
fn an_update_keeps_the_state_of_members_that_stay() {
    let mut pool = pool(
        Policy::RoundRobin,
        &[("a", 1, false), ("b", 1, false), ("c", 1, false)],
    );
    let now = SECOND;
    let [a, b, c] = ["a", "b", "c"].map(|n| pool.id(n).unwrap());
    pool.begin(a);
    pool.begin(a);
    pool.record_check(b, false);
    pool.record_check(b, false);
    pool.update(&[
        MemberSpec::new("a").weight(3),
        MemberSpec::new("b"),
        MemberSpec::new("d"),
    ])
    .unwrap();
    // a keeps its in-flight count and takes its new weight; b stays
    // unhealthy; c is gone at once, its handle dead; d waits for its state.
    assert_eq!(pool.id("a"), Some(a));
    let view = pool.member(a, now).unwrap();
    assert_eq!((view.in_flight, view.weight), (2, 3));
    assert!(!pool.member(b, now).unwrap().healthy);
    assert_eq!(pool.member(c, now), None);
    assert_eq!(pool.end(c, Outcome::Timeout, now), None);
    let d = pool.id("d").unwrap();
    assert_eq!(pool.member(d, now).unwrap().state, MemberState::Out);
    assert!(picks(&mut pool, 10).iter().all(|n| n == "a"));
    pool.set_state("d", MemberState::Serving).unwrap();
    let names = picks(&mut pool, 40);
    let counts_after = counts(&names);
    assert_eq!((counts_after["a"], counts_after["d"]), (30, 10));
    // The slot c left is reused by d, under a new handle.
    assert_ne!(d, c);
    assert_eq!(pool.name(c), None);
}

#[test]
fn a_bad_member_list_is_refused_whole() {
    let mut pool = pool(Policy::RoundRobin, &[("a", 1, false)]);
    let cases: [(Vec<MemberSpec>, &str); 5] = [
        (
            vec![MemberSpec::new("a"), MemberSpec::new("b").route("a")],
            "route `a` names two members",
        ),
        (
            vec![MemberSpec::new("b").route("x;y")],
            "member `b` route `x;y` is invalid",
        ),
        (
            vec![MemberSpec::new("b"), MemberSpec::new("b")],
            "member `b` is listed twice",
        ),
        (
            vec![MemberSpec::new("b").weight(0)],
            "member `b` has weight 0: use 1 to 1000",
        ),
        (
            vec![MemberSpec::new("b"), MemberSpec::new("no space")],
            "server name `no space` is invalid",
        ),
    ];
    for (members, message) in cases {
        let err = pool.update(&members).unwrap_err();
        assert!(err.to_string().starts_with(message), "{err}");
        assert!(pool.id("a").is_some());
        assert!(pool.id("b").is_none());
    }
    assert_eq!(
        pool.set_state("zz", MemberState::Serving).unwrap_err(),
        PoolError::UnknownMember { name: "zz".into() }
    );
}

#[test]
fn a_bad_configuration_is_refused() {
    let mut config = PoolConfig::default();
    config.health.fall = 0;
    assert_eq!(
        Pool::new(config).unwrap_err().to_string(),
        "health check `fall` must be at least 1"
    );
    let config: PoolConfig =
        serde_json::from_str(r#"{"policy":"ip_hash","health":{"rise":5}}"#).unwrap();
    assert_eq!(config.policy, Policy::IpHash);
    assert_eq!(config.health.rise, 5);
    assert_eq!(config.outlier, OutlierConfig::default());
}

#[test]
fn a_retry_never_picks_a_member_already_tried() {
    for policy in [
        Policy::RoundRobin,
        Policy::Random,
        Policy::LeastConn,
        Policy::IpHash,
    ] {
        let mut pool = pool(policy, &[("a", 1, false), ("b", 2, false), ("z", 1, true)]);
        let key = b"10.1.2.3";
        let mut tried = Vec::new();
        for _ in 0..2 {
            let ctx = PickContext {
                random: 12345,
                client_key: key,
                tried: &tried,
                ..PickContext::at(Duration::ZERO)
            };
            let id = pool.pick(&ctx).unwrap();
            assert!(!tried.contains(&id), "{policy}");
            tried.push(id);
        }
        // Every primary tried: the backup, then nothing.
        let ctx = PickContext {
            tried: &tried,
            ..PickContext::at(Duration::ZERO)
        };
        let backup = pool.pick(&ctx).unwrap();
        assert_eq!(pool.name(backup), Some("z"), "{policy}");
        tried.push(backup);
        let ctx = PickContext {
            tried: &tried,
            ..PickContext::at(Duration::ZERO)
        };
        assert_eq!(pool.pick(&ctx), None, "{policy}");
    }
}

/// Which member each of `keys` client keys goes to.
fn ip_hash_map(members: &[(String, u32)], keys: u32) -> Vec<String> {
    let specs: Vec<(&str, u32, bool)> = members
        .iter()
        .map(|(n, w)| (n.as_str(), *w, false))
        .collect();
    let mut pool = pool(Policy::IpHash, &specs);
    (0..keys)
        .map(|k| {
            let key = k.to_be_bytes();
            let ctx = PickContext {
                client_key: &key,
                ..PickContext::at(Duration::ZERO)
            };
            let id = pool.pick(&ctx).unwrap();
            name(&pool, id)
        })
        .collect()
}

fn moved(before: &[String], after: &[String]) -> f64 {
    let moved = before.iter().zip(after).filter(|(b, a)| b != a).count();
    moved as f64 / before.len() as f64
}

const KEYS: u32 = 20_000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// ip_hash spreads keys by weight, and adding or removing one member
    /// moves about that member's share of keys and no more.
    #[test]
    fn ip_hash_is_consistent_under_add_and_remove(
        weights in proptest::collection::vec(1u32..5, 2..8),
        removed in any::<prop::sample::Index>(),
    ) {
        let members: Vec<(String, u32)> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| (format!("web{i}"), *w))
            .collect();
        let total: u32 = weights.iter().sum();
        let full = ip_hash_map(&members, KEYS);
        let counts = counts(&full);
        for (member, weight) in &members {
            let share = f64::from(*weight) / f64::from(total);
            let got = *counts.get(member.as_str()).unwrap_or(&0) as f64 / f64::from(KEYS);
            prop_assert!((got - share).abs() < 0.02, "{member}: {got} vs {share}");
        }
        let gone = removed.index(members.len());
        let mut fewer = members.clone();
        let (gone_name, gone_weight) = fewer.remove(gone);
        let without = ip_hash_map(&fewer, KEYS);
        let share = f64::from(gone_weight) / f64::from(total);
        // Removing: the removed member's keys move, and little else.
        let removing = moved(&full, &without);
        prop_assert!(removing <= share + 0.025, "removing {gone_name}: {removing} vs {share}");
        let others_moved = full
            .iter()
            .zip(&without)
            .filter(|(before, after)| **before != gone_name && before != after)
            .count();
        prop_assert!(
            f64::from(others_moved as u32) / f64::from(KEYS) <= 0.015,
            "{others_moved} keys of other members moved"
        );
        // Adding it back is the same move the other way.
        let adding = moved(&without, &full);
        prop_assert!(adding <= share + 0.025, "adding {gone_name}: {adding} vs {share}");
    }

    /// Whatever happens to the members, a pick returns an available member
    /// of the right tier, and nothing only when no member is available.
    #[test]
    fn a_pick_is_always_an_available_member(
        policy in prop_oneof![
            Just(Policy::RoundRobin),
            Just(Policy::Random),
            Just(Policy::LeastConn),
            Just(Policy::IpHash),
        ],
        events in proptest::collection::vec((0usize..6, 0u8..8, 0u64..40), 1..80),
    ) {
        let names = ["m0", "m1", "m2", "m3", "m4", "m5"];
        let mut pool = pool(policy, &[
            ("m0", 1, false), ("m1", 2, false), ("m2", 3, false),
            ("m3", 1, false), ("m4", 1, true), ("m5", 2, true),
        ]);
        let mut now = Duration::ZERO;
        let mut in_flight = Vec::new();
        for (member, event, step) in events {
            now += Duration::from_secs(step);
            let name = names[member];
            let id = pool.id(name).unwrap();
            match event {
                0 => pool.set_state(name, MemberState::Out).unwrap(),
                1 => pool.set_state(name, MemberState::Serving).unwrap(),
                2 => pool
                    .set_state(name, MemberState::Draining { deadline: now + SECOND })
                    .unwrap(),
                3 => { pool.record_check(id, false); }
                4 => { pool.record_check(id, true); }
                5 => {
                    pool.begin(id);
                    pool.end(id, Outcome::Timeout, now);
                }
                6 => {
                    if let Some(id) = in_flight.pop() {
                        pool.end(id, Outcome::Success, now);
                    }
                }
                _ => {}
            }
            let key = (step as u32).to_be_bytes();
            let ctx = PickContext {
                random: step.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                client_key: &key,
                ..PickContext::at(now)
            };
            let views: Vec<MemberView<'_>> = pool.members(now).collect();
            let available: Vec<(String, bool)> = views
                .iter()
                .filter(|v| v.availability == Availability::Available)
                .map(|v| (v.name.to_string(), v.backup))
                .collect();
            let ejected = views.iter().filter(|v| v.ejected_until.is_some()).count();
            prop_assert!(ejected * 2 <= views.len());
            let any_primary = available.iter().any(|(_, backup)| !backup);
            match pool.pick(&ctx) {
                None => prop_assert!(available.is_empty()),
                Some(id) => {
                    pool.begin(id);
                    in_flight.push(id);
                    let picked = pool.name(id).unwrap().to_string();
                    let entry = available.iter().find(|(n, _)| *n == picked);
                    prop_assert!(entry.is_some(), "{picked} is not available");
                    prop_assert_eq!(entry.unwrap().1, !any_primary);
                }
            }
        }
    }
}

proptest! {
    /// Across any sequence of member lists, the pool holds exactly the
    /// listed members, with their listed weights; a member that stays
    /// keeps its handle and its in-flight count; a removed member's
    /// handle is dead and it is never picked again.
    #[test]
    fn updates_keep_the_members_that_stay_and_drop_the_others(
        policy in prop_oneof![
            Just(Policy::RoundRobin),
            Just(Policy::Random),
            Just(Policy::LeastConn),
            Just(Policy::IpHash),
        ],
        lists in proptest::collection::vec(
            proptest::collection::btree_map(0usize..8, 1u32..6, 0..8),
            1..12,
        ),
    ) {
        let mut pool = Pool::new(PoolConfig { policy, ..PoolConfig::default() }).unwrap();
        let now = Duration::ZERO;
        // name -> (handle, in-flight begun on it)
        let mut model: HashMap<String, (MemberId, u32)> = HashMap::new();
        let mut dead = Vec::new();
        for (step, list) in lists.into_iter().enumerate() {
            let specs: Vec<MemberSpec> = list
                .iter()
                .map(|(i, w)| MemberSpec::new(format!("m{i}")).weight(*w))
                .collect();
            pool.update(&specs).unwrap();
            let listed: HashMap<String, u32> =
                specs.iter().map(|s| (s.name.clone(), s.weight)).collect();
            model.retain(|name, (id, _)| {
                let stays = listed.contains_key(name);
                if !stays {
                    dead.push(*id);
                }
                stays
            });
            for spec in &specs {
                pool.set_state(&spec.name, MemberState::Serving).unwrap();
                let id = pool.id(&spec.name).unwrap();
                let entry = model.entry(spec.name.clone()).or_insert((id, 0));
                prop_assert_eq!(entry.0, id, "{} kept its handle", spec.name);
            }
            prop_assert_eq!(pool.len(), listed.len());
            for view in pool.members(now) {
                prop_assert_eq!(Some(&view.weight), listed.get(view.name));
                prop_assert_eq!(view.in_flight, model[view.name].1);
            }
            for id in &dead {
                prop_assert!(pool.member(*id, now).is_none());
                pool.begin(*id);
                prop_assert_eq!(pool.end(*id, Outcome::Timeout, now), None);
            }
            for k in 0..10u32 {
                let key = (k * 7 + step as u32).to_be_bytes();
                let ctx = PickContext {
                    random: u64::from(k).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    client_key: &key,
                    ..PickContext::at(now)
                };
                match pool.pick(&ctx) {
                    None => prop_assert!(listed.is_empty()),
                    Some(id) => {
                        let name = pool.name(id).unwrap().to_string();
                        prop_assert!(listed.contains_key(&name), "picked {} after its removal", name);
                        if k % 3 == 0 {
                            pool.begin(id);
                            model.get_mut(&name).unwrap().1 += 1;
                        }
                    }
                }
            }
        }
    }
}
