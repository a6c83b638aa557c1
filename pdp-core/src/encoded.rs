//! A compact binary form of the directory's Cedar JSON attribute values.
//!
//! A million users' attributes kept as JSON text cost their full text in
//! memory and a JSON parse (with a map, strings and keys allocated) every
//! time a user's entity is built. Encoded once at load, they take about
//! half the space, and building an entity reads them straight into Cedar's
//! core values: attribute keys and entity type names are interned (one
//! byte or two), integers are varints, strings are read in place.
//!
//! The encoding covers the plain values [`crate::values::to_value`] takes
//! (booleans, 64-bit integers, strings, sets, records, `__entity`
//! references). Anything else (`__extn` values, `null`, fractions, integers
//! beyond 64 bits, odd `__entity` forms) is kept as its JSON text, and a user
//! with such a value takes the public, slower path, exactly as before: the
//! encoding never changes what a user's attributes mean.

use crate::values::TypeNames;
use cedar_policy::EntityUid;
use cedar_policy_core::ast::{EntityUID, Value};
use rustc_hash::FxHashMap;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value as Json};
use smol_str::SmolStr;
use std::borrow::Cow;

const FALSE: u8 = 0;
const TRUE: u8 = 1;
const LONG: u8 = 2;
const STR: u8 = 3;
const SET: u8 = 4;
const RECORD: u8 = 5;
const ENTITY: u8 = 6;
const JSON: u8 = 7;
/// Ends a set.
const END: u8 = 8;
/// Ends a record: its keys are written as name id + 1, so 0 ends it.
const END_RECORD: u8 = 0;

fn put_key(out: &mut Vec<u8>, id: u32) {
    put_varint(out, u64::from(id) + 1);
}

/// Interned names: record keys, entity type names, group and role ids.
#[derive(Debug, Default, Clone)]
pub(crate) struct Names {
    pub list: Vec<SmolStr>,
    ids: FxHashMap<SmolStr, u32>,
}

impl Names {
    /// The id of `name`, interning it first if new. `None` past `u32::MAX`.
    pub fn intern(&mut self, name: &str) -> Option<u32> {
        if let Some(id) = self.ids.get(name) {
            return Some(*id);
        }
        let id = u32::try_from(self.list.len()).ok()?;
        let s = SmolStr::new(name);
        self.list.push(s.clone());
        self.ids.insert(s, id);
        Some(id)
    }

    /// Drop the lookup map once nothing more will be interned.
    pub fn freeze(self) -> Vec<SmolStr> {
        let mut list = self.list;
        list.shrink_to_fit();
        list
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_signed(out: &mut Vec<u8>, v: i64) {
    put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A cursor over encoded bytes. Every read is checked: malformed input
/// gives `None`, never a panic.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    pub fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn u8(&mut self) -> Option<u8> {
        let (b, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(*b)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.first().copied()
    }

    pub fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    pub fn signed(&mut self) -> Option<i64> {
        let v = self.varint()?;
        Some(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    pub fn str(&mut self) -> Option<&'a str> {
        let n = usize::try_from(self.varint()?).ok()?;
        std::str::from_utf8(self.bytes(n)?).ok()
    }

    pub fn name<'n>(&mut self, names: &'n [SmolStr]) -> Option<&'n SmolStr> {
        names.get(usize::try_from(self.varint()?).ok()?)
    }

    /// The next record key, `Ok(None)` at the record's end.
    fn key<'n>(&mut self, names: &'n [SmolStr]) -> Option<Option<&'n SmolStr>> {
        match self.varint()? {
            0 => Some(None),
            k => names.get(usize::try_from(k - 1).ok()?).map(Some),
        }
    }
}

/// Encode an attributes object given as JSON text (`{...}`), appending to
/// `out`. Plain values are encoded as they stream by; anything unusual
/// makes the encoder start over from a parsed value, so both roads give
/// the same bytes' meaning.
pub(crate) fn encode_text(raw: &str, out: &mut Vec<u8>, names: &mut Names) -> Result<(), String> {
    let mark = out.len();
    let mut de = serde_json::Deserializer::from_str(raw);
    let fast = Enc {
        out: &mut *out,
        names: &mut *names,
        top: true,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    if fast.is_ok() && out.get(mark) == Some(&RECORD) {
        return Ok(());
    }
    out.truncate(mark);
    let map: Map<String, Json> = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    encode_map(&map, out, names)
}

/// Encode an attributes object.
pub(crate) fn encode_map(
    map: &Map<String, Json>,
    out: &mut Vec<u8>,
    names: &mut Names,
) -> Result<(), String> {
    out.push(RECORD);
    for (k, v) in map {
        put_key(out, names.intern(k).ok_or("too many names")?);
        encode_value(v, out, names)?;
    }
    out.push(END_RECORD);
    Ok(())
}

/// Encode an attributes object as one JSON text value (decodes the same,
/// through the slow road).
pub(crate) fn encode_as_json(map: &Map<String, Json>, out: &mut Vec<u8>) {
    out.push(JSON);
    put_str(out, &Json::Object(map.clone()).to_string());
}

fn encode_value(v: &Json, out: &mut Vec<u8>, names: &mut Names) -> Result<(), String> {
    let as_json = |out: &mut Vec<u8>| {
        out.push(JSON);
        put_str(out, &v.to_string());
    };
    match v {
        Json::Bool(b) => out.push(if *b { TRUE } else { FALSE }),
        Json::Number(n) => match n.as_i64() {
            Some(i) => {
                out.push(LONG);
                put_signed(out, i);
            }
            None => as_json(out),
        },
        Json::String(s) => {
            out.push(STR);
            put_str(out, s);
        }
        Json::Array(items) => {
            out.push(SET);
            for i in items {
                encode_value(i, out, names)?;
            }
            out.push(END);
        }
        Json::Object(map) => {
            if let Some(e) = map.get("__entity") {
                match (map.len(), entity_ref(e)) {
                    (1, Some((ty, id))) => {
                        out.push(ENTITY);
                        put_varint(out, u64::from(names.intern(ty).ok_or("too many names")?));
                        put_str(out, id);
                    }
                    _ => as_json(out),
                }
            } else if map.contains_key("__extn") || map.contains_key("__expr") {
                as_json(out);
            } else {
                encode_map(map, out, names)?;
            }
        }
        Json::Null => as_json(out),
    }
    Ok(())
}

fn entity_ref(v: &Json) -> Option<(&str, &str)> {
    let m = v.as_object()?;
    if m.len() != 2 {
        return None;
    }
    Some((m.get("type")?.as_str()?, m.get("id")?.as_str()?))
}

/// The streaming encoder: gives up (an error) on anything but plain values
/// in their usual form; the caller then encodes from a parsed value.
struct Enc<'a> {
    out: &'a mut Vec<u8>,
    names: &'a mut Names,
    /// The attributes object itself: a record whatever its keys.
    top: bool,
}

fn give_up<E: de::Error>() -> E {
    E::custom("not a plain value")
}

impl<'de> DeserializeSeed<'de> for Enc<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EntityJson<'a> {
    #[serde(borrow, rename = "type")]
    ty: Cow<'a, str>,
    #[serde(borrow)]
    id: Cow<'a, str>,
}

impl<'de> Visitor<'de> for Enc<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a Cedar JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.out.push(if v { TRUE } else { FALSE });
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.out.push(LONG);
        put_signed(self.out, v);
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.visit_i64(i64::try_from(v).map_err(|_| give_up::<E>())?)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(give_up())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(give_up())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.out.push(STR);
        put_str(self.out, v);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.out.push(SET);
        while seq
            .next_element_seed(Enc {
                out: &mut *self.out,
                names: &mut *self.names,
                top: false,
            })?
            .is_some()
        {}
        self.out.push(END);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: Vec<u32> = Vec::new();
        let mut first = true;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key.starts_with("__") {
                // Only the usual single-key `__entity` reference streams.
                if self.top || !(first && key == "__entity") {
                    return Err(give_up());
                }
                let e: EntityJson<'de> = map.next_value().map_err(|_| give_up::<A::Error>())?;
                if map.next_key::<Cow<'de, str>>()?.is_some() {
                    return Err(give_up());
                }
                let ty = self.names.intern(&e.ty).ok_or_else(give_up::<A::Error>)?;
                self.out.push(ENTITY);
                put_varint(self.out, u64::from(ty));
                put_str(self.out, &e.id);
                return Ok(());
            }
            if first {
                self.out.push(RECORD);
                first = false;
            }
            let id = self.names.intern(&key).ok_or_else(give_up::<A::Error>)?;
            // A repeated key: JSON maps keep the last; let the parsed road decide.
            if seen.contains(&id) {
                return Err(give_up());
            }
            seen.push(id);
            put_key(self.out, id);
            map.next_value_seed(Enc {
                out: &mut *self.out,
                names: &mut *self.names,
                top: false,
            })?;
        }
        if first {
            self.out.push(RECORD);
        }
        self.out.push(END_RECORD);
        Ok(())
    }
}

/// Decode an encoded attributes record into Cedar core values, noting
/// entity references. `None`: a value kept as JSON (or malformed bytes):
/// take the public API through [`to_json`].
pub(crate) fn to_core(
    bytes: &[u8],
    names: &[SmolStr],
    types: &TypeNames,
    refs: &mut Vec<EntityUid>,
) -> Option<Vec<(SmolStr, Value)>> {
    let mut r = Reader::new(bytes);
    if r.u8()? != RECORD {
        return None;
    }
    let mut pairs = Vec::new();
    while let Some(key) = r.key(names)? {
        pairs.push((key.clone(), core_value(&mut r, names, types, refs)?));
    }
    Some(pairs)
}

fn core_value(
    r: &mut Reader<'_>,
    names: &[SmolStr],
    types: &TypeNames,
    refs: &mut Vec<EntityUid>,
) -> Option<Value> {
    Some(match r.u8()? {
        FALSE => Value::from(false),
        TRUE => Value::from(true),
        LONG => Value::from(r.signed()?),
        STR => Value::from(SmolStr::new(r.str()?)),
        SET => {
            let mut items = Vec::new();
            while r.peek()? != END {
                items.push(core_value(r, names, types, refs)?);
            }
            r.u8()?;
            Value::set(items, None)
        }
        RECORD => {
            let mut pairs = Vec::new();
            while let Some(key) = r.key(names)? {
                pairs.push((key.clone(), core_value(r, names, types, refs)?));
            }
            Value::record(pairs, None)
        }
        ENTITY => {
            let ty = r.name(names)?;
            let uid = types.uid(ty, r.str()?).ok()?;
            refs.push(uid.clone());
            Value::from(EntityUID::from(uid))
        }
        _ => return None,
    })
}

/// Decode an encoded attributes record back into Cedar JSON.
pub(crate) fn to_json(bytes: &[u8], names: &[SmolStr]) -> Option<Map<String, Json>> {
    match json_value(&mut Reader::new(bytes), names)? {
        Json::Object(m) => Some(m),
        _ => None,
    }
}

fn json_value(r: &mut Reader<'_>, names: &[SmolStr]) -> Option<Json> {
    Some(match r.u8()? {
        FALSE => Json::Bool(false),
        TRUE => Json::Bool(true),
        LONG => Json::from(r.signed()?),
        STR => Json::from(r.str()?),
        SET => {
            let mut items = Vec::new();
            while r.peek()? != END {
                items.push(json_value(r, names)?);
            }
            r.u8()?;
            Json::Array(items)
        }
        RECORD => {
            let mut map = Map::new();
            while let Some(key) = r.key(names)? {
                map.insert(key.to_string(), json_value(r, names)?);
            }
            Json::Object(map)
        }
        ENTITY => {
            let ty = r.name(names)?.to_string();
            let id = r.str()?;
            serde_json::json!({"__entity": {"type": ty, "id": id}})
        }
        JSON => serde_json::from_str(r.str()?).ok()?,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(text: &str) -> (Vec<u8>, Vec<SmolStr>, Map<String, Json>) {
        let mut names = Names::default();
        let mut out = Vec::new();
        encode_text(text, &mut out, &mut names).unwrap();
        let list = names.freeze();
        let back = to_json(&out, &list).unwrap();
        (out, list, back)
    }

    #[test]
    fn plain_attributes_stream_and_come_back() {
        let text = r#"{"department":"eng","level":-3,"big":9223372036854775807,"tags":["a",["b"]],"addr":{"city":"X"},"manager":{"__entity":{"type":"User","id":"u2"}},"ok":true}"#;
        let (bytes, names, back) = round_trip(text);
        let want: Map<String, Json> = serde_json::from_str(text).unwrap();
        assert_eq!(back, want);
        assert!(bytes.len() < text.len() / 2, "{} bytes", bytes.len());
        // Nothing was kept as JSON: the fast road takes it whole.
        let types = TypeNames::new([]);
        assert!(to_core(&bytes, &names, &types, &mut Vec::new()).is_some());
    }

    #[test]
    fn unusual_values_are_kept_as_json() {
        for text in [
            r#"{"ip":{"__extn":{"fn":"ip","arg":"10.0.0.1"}},"n":1}"#,
            r#"{"x":null}"#,
            r#"{"f":1.5}"#,
            r#"{"u":18446744073709551615}"#,
            r#"{"e":{"__entity":{"type":"User","id":"a"},"extra":1}}"#,
            r#"{"e":{"__entity":{"type":"User","id":"a","x":1}}}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"__weird":1}"#,
            r#"{"__entity":{"type":"User","id":"a"}}"#,
        ] {
            let (_, _, back) = round_trip(text);
            let want: Map<String, Json> = serde_json::from_str(text).unwrap();
            assert_eq!(back, want, "{text}");
        }
    }

    #[test]
    fn core_values_match_the_json_converter() {
        let types = TypeNames::new([]);
        let text = r#"{"department":"eng","level":3,"tags":["a","b"],"manager":{"__entity":{"type":"User","id":"u2"}},"r":{"k":false}}"#;
        let mut names = Names::default();
        let mut out = Vec::new();
        encode_text(text, &mut out, &mut names).unwrap();
        let list = names.freeze();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut got = to_core(&out, &list, &types, &mut a).unwrap();
        let json: Map<String, Json> = serde_json::from_str(text).unwrap();
        let mut want: Vec<(SmolStr, Value)> = json
            .iter()
            .map(|(k, v)| {
                (
                    SmolStr::new(k),
                    crate::values::to_value(v, &types, &mut b).unwrap(),
                )
            })
            .collect();
        got.sort_by(|x, y| x.0.cmp(&y.0));
        want.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(got, want);
        assert_eq!(a, b);
        // An extension value sends the whole user to the public road.
        let mut out = Vec::new();
        let mut names = Names::default();
        encode_text(
            r#"{"ip":{"__extn":{"fn":"ip","arg":"10.0.0.1"}}}"#,
            &mut out,
            &mut names,
        )
        .unwrap();
        assert!(to_core(&out, &names.freeze(), &types, &mut Vec::new()).is_none());
    }

    fn cedar_json() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(Json::Bool),
            any::<i64>().prop_map(Json::from),
            "[a-z_]{0,6}".prop_map(Json::from),
            Just(Json::Null),
            Just(serde_json::json!(0.5)),
            "[a-z]{1,4}".prop_map(|id| serde_json::json!({"__entity": {"type": "User", "id": id}})),
            Just(serde_json::json!({"__extn": {"fn": "ip", "arg": "10.0.0.1"}})),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
                prop::collection::btree_map("_{0,2}[a-z]{1,3}", inner, 0..4)
                    .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_attributes_round_trip(attrs in prop::collection::btree_map("[a-z_]{1,5}", cedar_json(), 0..5)) {
            let text = Json::Object(attrs.into_iter().collect()).to_string();
            let (bytes, names, back) = round_trip(&text);
            let want: Map<String, Json> = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&back, &want);
            // The fast road takes exactly what the JSON converter takes, and
            // gives the same values and references.
            let types = TypeNames::new([]);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let got = to_core(&bytes, &names, &types, &mut a).map(|mut v| {
                v.sort_by(|x, y| x.0.cmp(&y.0));
                v
            });
            let expected: Option<Vec<(SmolStr, Value)>> = want
                .iter()
                .map(|(k, v)| Some((SmolStr::new(k), crate::values::to_value(v, &types, &mut b)?)))
                .collect();
            prop_assert_eq!(got.is_some(), expected.is_some());
            if let (Some(got), Some(expected)) = (got, expected) {
                prop_assert_eq!(got, expected);
                prop_assert_eq!(a, b);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let names = [SmolStr::new("a")];
            let _ = to_json(&bytes, &names);
            let _ = to_core(&bytes, &names, &TypeNames::new([]), &mut Vec::new());
        }
    }
}
