//! Behaviour of the generator and the query rules, checked through the parsed JSON.

use std::collections::HashSet;

use serde_json::Value;

use super::*;

fn page(seed: &str, page: u32, results: u32) -> PageParams {
    PageParams::new(seed, page, results)
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).expect("body is valid JSON")
}

fn query(q: &str) -> PageParams {
    PageParams::from_query_with(Some(q), || "drawnseed0000000".to_owned()).expect("accepted")
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Result<&'a str, String> {
    v.pointer(pointer)
        .ok_or_else(|| format!("{pointer} missing"))?
        .as_str()
        .ok_or_else(|| format!("{pointer} not a string"))
}

/// What a strict consumer would demand of a record; `Err` names the first problem.
fn check_record(r: &Value) -> Result<(), String> {
    let uuid = str_at(r, "/login/uuid")?;
    uuid::Uuid::parse_str(uuid).map_err(|e| format!("uuid {uuid}: {e}"))?;
    str_at(r, "/email")?;
    str_at(r, "/name/first")?;
    let last = str_at(r, "/name/last")?;
    if last.len() > 1000 {
        return Err(format!("name.last of {} bytes", last.len()));
    }
    for date in ["/dob/date", "/registered/date"] {
        let text = str_at(r, date)?;
        chrono::DateTime::parse_from_rfc3339(text).map_err(|e| format!("{date} {text}: {e}"))?;
    }
    Ok(())
}

#[test]
fn same_request_gives_identical_bytes() {
    let faults = ContentFaults::new(0.2, ContentFault::ALL);
    let params = page("determinism", 3, 500);
    let a = generate_page(&params, &faults);
    let b = generate_page(&params, &faults);
    assert_eq!(a.body, b.body);
    assert_eq!(a.users, b.users);
    assert_ne!(
        a.body,
        generate_page(&page("determinism", 4, 500), &faults).body
    );
    assert_ne!(
        a.body,
        generate_page(&page("determinism2", 3, 500), &faults).body
    );
}

#[test]
fn records_do_not_depend_on_results() {
    let small = generate_page(&page("prefix", 2, 10), &ContentFaults::none());
    let big = generate_page(&page("prefix", 2, 300), &ContentFaults::none());
    let small_v = parse(&small.body);
    let big_v = parse(&big.body);
    assert_eq!(small_v["results"].as_array().map(Vec::len), Some(10));
    let big_records = big_v["results"].as_array().expect("results");
    assert_eq!(
        small_v["results"].as_array(),
        Some(&big_records[..10].to_vec())
    );
}

#[test]
fn uuids_unique_across_pages_and_stable() {
    let mut seen = HashSet::new();
    for p in 1..=3 {
        let generated = generate_page(&page("unique", p, 5000), &ContentFaults::none());
        for (i, u) in generated.users.iter().enumerate() {
            let id = u.id.clone().expect("uuid present");
            assert_eq!(id, user_uuid("unique", p, i as u32));
            assert!(seen.insert(id), "duplicate uuid on page {p} index {i}");
        }
    }
    assert_eq!(seen.len(), 15_000);
}

#[test]
fn full_schema_with_credentials_and_consistent_ages() {
    let generated = generate_page(&page("schema", 1, 400), &ContentFaults::none());
    let v = parse(&generated.body);
    assert_eq!(v["info"]["seed"], "schema");
    assert_eq!(v["info"]["results"], 400);
    assert_eq!(v["info"]["page"], 1);
    assert_eq!(v["info"]["version"], "1.4");
    let records = v["results"].as_array().expect("results array");
    assert_eq!(records.len(), 400);
    // Keys in the real API's order (serde_json's map sorts them, so look at the text).
    let first_record = &generated.body[..generated.body.find("},{").expect("two records")];
    let order = [
        "gender",
        "name",
        "location",
        "email",
        "login",
        "dob",
        "registered",
        "phone",
        "cell",
        "id",
        "picture",
        "nat",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|k| {
            first_record
                .find(&format!("\"{k}\":"))
                .expect("key present")
        })
        .collect();
    assert!(positions.is_sorted(), "{positions:?}");
    let reference = chrono::DateTime::from_timestamp_millis(REFERENCE_TIME_MS).expect("ref");
    for (r, user) in records.iter().zip(&generated.users) {
        check_record(r).expect("valid record");
        let mut keys: Vec<&str> = r
            .as_object()
            .expect("object")
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut want: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
        keys.sort_unstable();
        want.sort_unstable();
        assert_eq!(keys, want);
        assert_eq!(user.id.as_deref(), r["login"]["uuid"].as_str());
        let gender = str_at(r, "/gender").expect("gender");
        assert!(gender == "male" || gender == "female");
        if gender == "male" {
            assert_eq!(r["name"]["title"], "Mr");
        }
        for key in ["password", "salt", "username"] {
            assert!(!str_at(r, &format!("/login/{key}")).expect(key).is_empty());
        }
        for (key, len) in [("md5", 32), ("sha1", 40), ("sha256", 64)] {
            let hex = str_at(r, &format!("/login/{key}")).expect(key);
            assert_eq!(hex.len(), len, "{key}");
            assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
        }
        let email = str_at(r, "/email").expect("email");
        assert!(
            email.is_ascii() && email.ends_with("@example.com"),
            "{email}"
        );
        for (field, max) in [("dob", 90), ("registered", 25)] {
            let date = chrono::DateTime::parse_from_rfc3339(
                str_at(r, &format!("/{field}/date")).expect("date"),
            )
            .expect("rfc3339");
            let age = r[field]["age"].as_i64().expect("age number");
            let years = reference
                .years_since(date.to_utc())
                .expect("date before reference");
            assert_eq!(i64::from(years), age, "{field}");
            assert!(age <= max);
        }
        assert!(r["dob"]["age"].as_i64() >= Some(21));
        for coord in ["latitude", "longitude"] {
            let text = str_at(r, &format!("/location/coordinates/{coord}")).expect("coord");
            let value: f64 = text.parse().expect("numeric string");
            assert!(value.abs() <= 180.0);
            assert_eq!(text.split('.').nth(1).map(str::len), Some(4), "{text}");
        }
        assert!(r["location"]["street"]["number"].is_u64());
        for size in ["large", "medium", "thumbnail"] {
            let url = str_at(r, &format!("/picture/{size}")).expect("picture");
            assert!(
                url.starts_with("https://randomuser.me/api/portraits/"),
                "{url}"
            );
            assert!(url.ends_with(".jpg"));
        }
    }
}

#[test]
fn postcodes_and_ids_follow_the_nationality() {
    for nat in Nat::ALL {
        let mut params = page("nat", 1, 60);
        params.nat = vec![nat];
        let v = parse(&generate_page(&params, &ContentFaults::none()).body);
        for r in v["results"].as_array().expect("results") {
            assert_eq!(r["nat"], nat.code());
            assert_eq!(r["location"]["country"], nat.country());
            let postcode = &r["location"]["postcode"];
            if nat.postcode_is_string() {
                assert!(postcode.is_string(), "{nat}: {postcode}");
            } else {
                assert!(postcode.is_u64(), "{nat}: {postcode}");
            }
            let id_value = &r["id"]["value"];
            match nat {
                Nat::NZ => assert!(id_value.is_null(), "{id_value}"),
                _ => assert!(id_value.as_str().is_some_and(|s| !s.is_empty())),
            }
            if nat == Nat::US {
                let ssn = id_value.as_str().unwrap_or_default();
                assert_eq!(ssn.len(), 11, "{ssn}");
                assert!(!ssn.starts_with("000") && !ssn.starts_with("666"));
            }
            if nat == Nat::CA {
                let pc = postcode.as_str().unwrap_or_default().as_bytes();
                assert_eq!(pc.len(), 7);
                assert!(pc[0].is_ascii_uppercase() && pc[1].is_ascii_digit() && pc[3] == b' ');
            }
        }
    }
}

#[test]
fn query_numbers_fall_back_to_one() {
    for (raw, want) in [
        ("", 1),
        ("0", 1),
        ("-3", 1),
        ("abc", 1),
        ("2.5", 1),
        ("5001", 1),
        ("5000", 5000),
        ("7", 7),
        ("%207", 7),
    ] {
        assert_eq!(
            query(&format!("results={raw}")).results,
            want,
            "results={raw}"
        );
    }
    for (raw, want) in [
        ("0", 1),
        ("10001", 1),
        ("x", 1),
        ("10000", 10_000),
        ("3", 3),
    ] {
        assert_eq!(query(&format!("page={raw}")).page, want, "page={raw}");
    }
    let defaults = PageParams::from_query(None).expect("no query");
    assert_eq!((defaults.results, defaults.page), (1, 1));
}

#[test]
fn missing_seed_is_drawn_and_echoed() {
    let params = PageParams::from_query(Some("results=2")).expect("ok");
    assert_eq!(params.seed.len(), 16);
    assert!(
        params
            .seed
            .bytes()
            .all(|b| b"abcdef1234567890".contains(&b))
    );
    let v = parse(&generate_page(&params, &ContentFaults::none()).body);
    assert_eq!(v["info"]["seed"], params.seed.as_str());
    // An empty seed counts as missing.
    assert_eq!(query("seed=").seed, "drawnseed0000000");
    assert_ne!(random_seed(), random_seed());
}

#[test]
fn gender_only_without_seed() {
    assert_eq!(query("gender=female").gender, Some(Gender::Female));
    assert_eq!(query("gender=female&seed=x").gender, None);
    assert_eq!(query("gender=other").gender, None);
    let v = parse(&generate_page(&query("gender=female&results=50"), &ContentFaults::none()).body);
    let records = v["results"].as_array().expect("results");
    assert!(records.iter().all(|r| r["gender"] == "female"));
}

#[test]
fn nat_rules() {
    assert_eq!(query("nat=gb,us").nat, vec![Nat::GB, Nat::US]);
    assert_eq!(query("nat=GB").nat, vec![Nat::GB]);
    assert_eq!(query("nationality=de").nat, vec![Nat::DE]);
    // Any unknown (or unemulated) code voids the filter, as in the real API.
    assert!(query("nat=gb,xx").nat.is_empty());
    assert!(query("nat=br").nat.is_empty());
    // A single nat is appended to info.seed; that 18-character seed reproduces the page.
    let single = query("seed=0123456789abcdef&nat=gb&results=5");
    assert_eq!(single.info_seed(), "0123456789abcdef09");
    let replay = query("seed=0123456789abcdef09&results=5");
    assert_eq!(replay.nat, vec![Nat::GB]);
    assert_eq!(replay.info_seed(), "0123456789abcdef09");
    let a = generate_page(&single, &ContentFaults::none());
    let b = generate_page(&replay, &ContentFaults::none());
    assert_eq!(a.body, b.body);
    // Several nats: the seed is echoed as given.
    assert_eq!(query("seed=s&nat=gb,us").info_seed(), "s");
}

#[test]
fn inc_exc_and_noinfo() {
    let params = query("seed=fields&results=20&inc=name,login,nat&exc=nat");
    let fields = params.fields();
    assert!(fields.contains(Field::Name) && fields.contains(Field::Login));
    assert!(!fields.contains(Field::Nat) && !fields.contains(Field::Email));
    let v = parse(&generate_page(&params, &ContentFaults::none()).body);
    let full = parse(&generate_page(&query("seed=fields&results=20"), &ContentFaults::none()).body);
    for (r, f) in v["results"]
        .as_array()
        .expect("r")
        .iter()
        .zip(full["results"].as_array().expect("f"))
    {
        let keys: Vec<&String> = r.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["login", "name"]);
        // Excluding fields never changes the others.
        assert_eq!(r["name"], f["name"]);
        assert_eq!(r["login"], f["login"]);
    }
    assert_eq!(query("inc=").fields(), FieldSet::ALL);
    assert!(!query("exc=LOGIN, email").fields().contains(Field::Login));
    let noinfo = parse(&generate_page(&query("noinfo&results=1"), &ContentFaults::none()).body);
    assert!(noinfo.get("info").is_none());
    assert!(query("noinfo=false").noinfo);
}

#[test]
fn query_decoding_formats_and_repeats() {
    assert_eq!(query("seed=a%20b+c%zz").seed, "a b c%zz");
    assert_eq!(query("results=3&results=4").results, 4);
    assert_eq!(query("format=JSON").results, 1);
    let err = PageParams::from_query(Some("format=csv")).expect_err("csv refused");
    assert_eq!(err, ParamError::UnsupportedFormat("csv".to_owned()));
    assert!(PageParams::from_query(Some("fmt=xml")).is_err());
}

#[test]
fn hostile_seed_is_escaped_in_info() {
    let seed = "q\"uo\\te\n\u{1}é";
    let v = parse(&generate_page(&page(seed, 1, 1), &ContentFaults::none()).body);
    assert_eq!(v["info"]["seed"], seed);
}

#[test]
fn fault_marks_match_the_records() {
    let faults = ContentFaults::new(0.3, ContentFault::ALL);
    let generated = generate_page(&page("faults", 5, 2000), &faults);
    let v = parse(&generated.body);
    let records = v["results"].as_array().expect("results");
    let mut by_kind = std::collections::HashMap::new();
    for (r, user) in records.iter().zip(&generated.users) {
        let verdict = check_record(r);
        match user.fault {
            None => assert_eq!(verdict, Ok(()), "unmarked record is bad"),
            Some(kind) => {
                assert!(verdict.is_err(), "{kind} record passes the check");
                *by_kind.entry(kind).or_insert(0) += 1;
            }
        }
        assert_eq!(
            user.id.as_deref(),
            r.pointer("/login/uuid").and_then(Value::as_str)
        );
        match user.fault {
            Some(ContentFault::InvalidUuid) => {
                assert!(str_at(r, "/login/uuid").is_ok_and(|u| u.starts_with("not-a-uuid-")));
            }
            Some(ContentFault::BadDate) => assert_eq!(r["dob"]["date"], "yesterday"),
            Some(ContentFault::HugeString) => {
                assert_eq!(str_at(r, "/name/last").map(str::len), Ok(HUGE_STRING_BYTES));
            }
            Some(ContentFault::WrongType) => {
                assert!(r["dob"]["date"].is_i64() || r["name"]["first"].is_array());
            }
            Some(ContentFault::MissingField) => {
                assert!(r.get("email").is_none() || r["login"].get("uuid").is_none());
            }
            None => {}
        }
    }
    let total: usize = by_kind.values().sum();
    assert!(
        (500..=700).contains(&total),
        "{total} faults for 30% of 2000"
    );
    assert_eq!(by_kind.len(), 5, "{by_kind:?}");
}

#[test]
fn fault_fraction_bounds_and_inapplicable_kinds() {
    let all = generate_page(
        &page("f", 1, 200),
        &ContentFaults::new(1.0, [ContentFault::BadDate]),
    );
    assert!(
        all.users
            .iter()
            .all(|u| u.fault == Some(ContentFault::BadDate))
    );
    let none = generate_page(
        &page("f", 1, 200),
        &ContentFaults::new(0.0, ContentFault::ALL),
    );
    assert!(none.users.iter().all(GeneratedUser::is_valid));
    // No login in the response: an invalid uuid cannot be planted, the record stays valid.
    let mut params = page("f", 1, 50);
    params.exc = Some(vec!["login".to_owned()]);
    let skipped = generate_page(
        &params,
        &ContentFaults::new(1.0, [ContentFault::InvalidUuid]),
    );
    assert!(
        skipped
            .users
            .iter()
            .all(|u| u.fault.is_none() && u.id.is_none())
    );
    // ...but another enabled kind still applies.
    let other = generate_page(
        &params,
        &ContentFaults::new(1.0, [ContentFault::InvalidUuid, ContentFault::MissingField]),
    );
    assert!(
        other
            .users
            .iter()
            .all(|u| u.fault == Some(ContentFault::MissingField))
    );
    parse(&other.body);
}

#[test]
fn fault_kind_names_round_trip() {
    for kind in ContentFault::ALL {
        assert_eq!(kind.to_string().parse::<ContentFault>(), Ok(kind));
    }
    assert_eq!(
        "Wrong_Type".parse::<ContentFault>(),
        Ok(ContentFault::WrongType)
    );
    assert!("invalid-utf8".parse::<ContentFault>().is_err());
}
