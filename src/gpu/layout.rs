//! The kernels' params structs: each is declared once in Rust with [`params_struct!`] and once
//! in WGSL; a test parses every shader with naga and checks that each WGSL struct of the same
//! name has the same fields, in the same order, at the same offsets, with the same scalar types.

/// Declares a `#[repr(C)]` Pod params struct, visible to the `gpu` module (every field a `u32`, `i32`, `f32` or an array of
/// them) and, for the layout test, its fields' names, offsets and types.
macro_rules! params_struct {
    ($(#[$sm:meta])* struct $name:ident { $($(#[$fm:meta])* $f:ident: $t:ty,)* }) => {
        $(#[$sm])*
        #[repr(C)]
        #[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
        pub(super) struct $name {
            $($(#[$fm])* pub(super) $f: $t,)*
        }

        #[cfg(test)]
        impl $name {
            /// Name, byte offset and type of each field, in declaration order.
            const FIELDS: &[(&str, usize, &str)] =
                &[$((stringify!($f), std::mem::offset_of!($name, $f), stringify!($t))),*];

            /// `Err` describing the first difference from the WGSL struct of this name.
            fn check_layout() -> Result<(), String> {
                crate::gpu::layout::compare(
                    stringify!($name),
                    std::mem::size_of::<$name>(),
                    Self::FIELDS,
                )
            }
        }
    };
}
pub(crate) use params_struct;

/// One 4-byte word of a struct: its offset, scalar type, and the field it starts (if any) —
/// `None` for the later words of a vector or array and for padding fields, whose names are
/// free (`_pad`, `pad0`).
#[cfg(test)]
type Word = (usize, &'static str, Option<String>);

#[cfg(test)]
fn is_padding(name: &str) -> bool {
    name.starts_with('_') || name.starts_with("pad")
}

/// The words of a Rust field of type `ty` (`u32`, `[f32; 2]`, `[[u32; 2]; 6]`) at `offset`.
#[cfg(test)]
fn rust_words(name: &str, offset: usize, ty: &str) -> Result<Vec<Word>, String> {
    let ty = ty.replace(' ', "");
    let (scalar, count) = match ty.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        Some(inner) => {
            let (elem, n) = inner
                .rsplit_once(';')
                .ok_or(format!("field {name}: type {ty}"))?;
            let n: usize = n.parse().map_err(|_| format!("field {name}: type {ty}"))?;
            let elem = rust_words(name, 0, elem)?;
            (elem[0].1, elem.len() * n)
        }
        None => match ty.as_str() {
            "u32" => ("u32", 1),
            "i32" => ("i32", 1),
            "f32" => ("f32", 1),
            _ => return Err(format!("field {name}: type {ty} is not a 4-byte scalar")),
        },
    };
    Ok((0..count)
        .map(|i| {
            let first = (i == 0 && !is_padding(name)).then(|| name.to_string());
            (offset + 4 * i, scalar, first)
        })
        .collect())
}

/// The words of the WGSL struct `name` in `module`, and its size; `None` if it has none.
#[cfg(test)]
fn wgsl_words(module: &naga::Module, name: &str) -> Option<Result<(usize, Vec<Word>), String>> {
    use naga::{ScalarKind, TypeInner};
    let ty = module
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some(name))?
        .1;
    let TypeInner::Struct { members, span } = &ty.inner else {
        return Some(Err(format!("{name} is not a struct in WGSL")));
    };
    let scalar = |s: naga::Scalar| match (s.kind, s.width) {
        (ScalarKind::Uint, 4) => Ok("u32"),
        (ScalarKind::Sint, 4) => Ok("i32"),
        (ScalarKind::Float, 4) => Ok("f32"),
        _ => Err(format!("{name}: a member of scalar {s:?}")),
    };
    let mut words = Vec::new();
    for m in members {
        let field = m.name.clone().unwrap_or_default();
        let (kind, count) = match &module.types[m.ty].inner {
            TypeInner::Scalar(s) => (scalar(*s), 1),
            TypeInner::Vector { size, scalar: s } => (scalar(*s), *size as usize),
            other => (Err(format!("{name}.{field}: type {other:?}")), 0),
        };
        let kind = match kind {
            Ok(k) => k,
            Err(e) => return Some(Err(e)),
        };
        for i in 0..count {
            let first = (i == 0 && !is_padding(&field)).then(|| field.clone());
            words.push((m.offset as usize + 4 * i, kind, first));
        }
    }
    Some(Ok((*span as usize, words)))
}

/// Compares the Rust struct `name` (`size` bytes, `fields`) with the WGSL struct of that name
/// in every shader that declares one; `Err` if none does or any differs.
#[cfg(test)]
pub(crate) fn compare(
    name: &str,
    size: usize,
    fields: &[(&str, usize, &str)],
) -> Result<(), String> {
    let mut rust = Vec::new();
    for &(f, offset, ty) in fields {
        rust.extend(rust_words(f, offset, ty)?);
    }
    let mut found = 0;
    for shader in super::kernels::Shader::ALL {
        let module = naga::front::wgsl::parse_str(shader.source())
            .map_err(|e| format!("{shader:?}: {}", e.emit_to_string(shader.source())))?;
        let Some(wgsl) = wgsl_words(&module, name) else {
            continue;
        };
        let (span, wgsl) = wgsl?;
        found += 1;
        if span != size {
            return Err(format!(
                "{name}: {size} bytes in Rust, {span} in {shader:?}"
            ));
        }
        if let Some((r, w)) = rust.iter().zip(&wgsl).find(|(r, w)| r != w) {
            return Err(format!(
                "{name} in {shader:?}: Rust has {r:?} where WGSL has {w:?} (offset, type, field)"
            ));
        }
        if rust.len() != wgsl.len() {
            return Err(format!(
                "{name} in {shader:?}: {} words in Rust, {} in WGSL",
                rust.len(),
                wgsl.len()
            ));
        }
    }
    if found == 0 {
        return Err(format!("no shader declares {name}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::compare;

    const TRAIN: [(&str, usize, &str); 8] = [
        ("total", 0, "u32"),
        ("kind", 4, "u32"),
        ("a", 8, "f32"),
        ("b", 12, "f32"),
        ("c", 16, "f32"),
        ("classes", 20, "u32"),
        ("hw", 24, "u32"),
        ("scale", 28, "f32"),
    ];

    #[test]
    fn the_comparison_finds_every_kind_of_difference() {
        compare("TrainParams", 32, &TRAIN).unwrap();
        let mut renamed = TRAIN;
        renamed[5].0 = "class_count";
        assert!(compare("TrainParams", 32, &renamed)
            .unwrap_err()
            .contains("class_count"));
        let mut retyped = TRAIN;
        retyped[2].2 = "u32";
        assert!(compare("TrainParams", 32, &retyped).is_err());
        let mut swapped = TRAIN;
        swapped.swap(2, 5);
        (swapped[2].1, swapped[5].1) = (8, 20);
        assert!(compare("TrainParams", 32, &swapped).is_err());
        assert!(compare("TrainParams", 36, &TRAIN)
            .unwrap_err()
            .contains("36 bytes"));
        assert!(compare("TrainParams", 28, &TRAIN[..7]).is_err());
        assert!(compare("NoSuchParams", 32, &TRAIN)
            .unwrap_err()
            .contains("no shader"));
    }
}
