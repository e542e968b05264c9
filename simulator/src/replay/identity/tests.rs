//! The minter's rules without a gateway: claims read from foreign tokens, `--rotate` timelines,
//! the reason → recipe table, where fresh credentials go, test API keys.

use super::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gateway::vocab::Reason;

fn jwt(claims: &str) -> String {
    format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    )
}

#[test]
fn claims_are_read_from_a_foreign_token_without_verifying_it() {
    let names = ClaimNames::default();
    let who = decode_claims(
        &jwt(r#"{"sub":"alice","tenant":"acme","scope":"users:read users:write","roles":["admin"],"tier":"paid","exp":1}"#),
        &names,
    )
    .expect("decodes");
    assert_eq!(
        who,
        IdentitySpec {
            subject: "alice".into(),
            tenant: Some("acme".into()),
            scopes: vec!["users:read".into(), "users:write".into()],
            roles: vec!["admin".into()],
            tier: Some("paid".into()),
        }
    );
    let arrays = decode_claims(
        &jwt(r#"{"sub":"bob","scopes":["a","b"],"roles":"x y"}"#),
        &names,
    )
    .expect("decodes");
    assert_eq!(arrays.scopes, ["a", "b"]);
    assert_eq!(arrays.roles, ["x", "y"]);
    assert_eq!(arrays.tenant, None);
    let padded = format!(
        "h.{}.s",
        base64::engine::general_purpose::URL_SAFE.encode(r#"{"sub":"carol"}"#)
    );
    assert_eq!(
        decode_claims(&padded, &names).expect("padded").subject,
        "carol"
    );
    for bad in [
        "opaque-token",
        "a.!!!.c",
        &jwt("[1]"),
        &jwt(r#"{"scope":"a"}"#),
    ] {
        assert!(decode_claims(bad, &names).is_err(), "{bad}");
    }
}

#[test]
fn a_rotation_timeline_parses_in_time_order() {
    let rotation = parse_rotation("publish@10s, sign@20s,abrupt@1m,retire@30s").expect("parses");
    assert_eq!(
        rotation.0,
        [
            (Duration::from_secs(10), RotateStep::Publish),
            (Duration::from_secs(20), RotateStep::Sign),
            (Duration::from_secs(30), RotateStep::Retire),
            (Duration::from_secs(60), RotateStep::Abruptly),
        ]
    );
    assert_eq!(
        parse_rotation("abruptly@500ms").expect("parses").0,
        [(Duration::from_millis(500), RotateStep::Abruptly)]
    );
    for (bad, says) in [
        ("publish", "expected STEP@OFFSET"),
        ("spin@1s", "not a rotation step"),
        ("sign@soon", "not a duration"),
        ("publish@1s,", "item 2"),
    ] {
        let error = parse_rotation(bad).expect_err(bad);
        assert!(error.contains(says), "{bad}: {error}");
    }
}

#[test]
fn every_authn_reason_has_a_recipe_and_only_unreproducible_ones_are_malformed() {
    for reason in Reason::ALL {
        let recipe = recipe(Some(reason.as_str()));
        let malformed = recipe == Recipe::Hostile(Hostile::Malformed);
        let expected_malformed = matches!(reason, Reason::MalformedToken | Reason::KeysUnavailable);
        assert_eq!(malformed, expected_malformed, "{}", reason.as_str());
    }
    assert_eq!(recipe(None), Recipe::Valid);
    assert_eq!(
        recipe(Some("no-such-reason")),
        Recipe::Hostile(Hostile::Malformed)
    );
}

#[test]
fn redacted_fields_are_filled_in_place_or_dropped() {
    let mut headers = vec![
        ("authorization".to_string(), REDACTED.to_string()),
        ("accept".to_string(), "*/*".to_string()),
        ("authorization".to_string(), REDACTED.to_string()),
    ];
    put_header(&mut headers, "authorization", Some("Bearer one".into()));
    put_header(&mut headers, "authorization", None);
    assert_eq!(
        headers,
        [
            ("authorization".to_string(), "Bearer one".to_string()),
            ("accept".to_string(), "*/*".to_string()),
        ]
    );
    let mut target = "/a?x=1&access_token=%3Credacted%3E&y=2".to_string();
    put_query(&mut target, "access_token", Some("tok".into()));
    assert_eq!(target, "/a?x=1&access_token=tok&y=2");
    put_query(&mut target, "other", Some("v".into()));
    assert_eq!(target, "/a?x=1&access_token=tok&y=2&other=v");
    let mut target = format!("/b?session={REDACTED}&k=v");
    strip_redacted_query(&mut target);
    assert_eq!(target, "/b?k=v");
}

#[test]
fn test_api_keys_replace_inline_and_file_keys_by_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("keys.yaml"),
        "- id: from-file\n  sha256: ff56acf1875900a613d4db1cb71d3d72f3e4812725a14240a4a1652f1e9668ac\n",
    )
    .expect("write");
    let config = "auth:\n  api_keys:\n    header: X-Api-Key\n    file: keys.yaml\n    keys:\n      - id: inline\n        key: secret\n        tier: free\n";
    let (text, keys) = test_api_keys(config, dir.path()).expect("rewrites");
    assert_eq!(keys.keys().collect::<Vec<_>>(), ["from-file", "inline"]);
    assert!(
        !text.contains("secret") && !text.contains("file:"),
        "{text}"
    );
    for key in keys.values() {
        let digest = gateway::identity::api_key::digest(key.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert!(text.contains(&hex), "{text}");
    }
    let plain = "routes: []\n";
    assert_eq!(
        test_api_keys(plain, dir.path()).expect("unchanged"),
        (plain.to_owned(), BTreeMap::new())
    );
    let missing = "auth:\n  api_keys:\n    file: nowhere.yaml\n";
    assert!(
        test_api_keys(missing, dir.path())
            .expect_err("no file")
            .contains("nowhere.yaml")
    );
}
