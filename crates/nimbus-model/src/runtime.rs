use std::fmt;

use crate::error::ValidationError;

/// Language family of a runtime, which decides how a handler string maps to a file
/// in the code package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeFamily {
    Python,
    Node,
    Ruby,
    Java,
    Dotnet,
    /// `provided`, `provided.al2`, `provided.al2023` and `go1.x`: the package itself
    /// carries the runtime as a `bootstrap` executable (or, for `go1.x`, the handler).
    Custom,
}

/// A runtime id in AWS's spelling (`python3.12`, `nodejs20.x`, `provided.al2023`).
/// Accepting a known id does not mean a worker can run it: workers advertise the
/// runtimes whose interpreters they have, and invocation checks that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runtime {
    pub id: &'static str,
    pub family: RuntimeFamily,
}

/// Runtime ids that Lambda has offered, current and deprecated.
pub const KNOWN_RUNTIMES: &[Runtime] = &[
    Runtime {
        id: "python3.8",
        family: RuntimeFamily::Python,
    },
    Runtime {
        id: "python3.9",
        family: RuntimeFamily::Python,
    },
    Runtime {
        id: "python3.10",
        family: RuntimeFamily::Python,
    },
    Runtime {
        id: "python3.11",
        family: RuntimeFamily::Python,
    },
    Runtime {
        id: "python3.12",
        family: RuntimeFamily::Python,
    },
    Runtime {
        id: "python3.13",
        family: RuntimeFamily::Python,
    },
    Runtime {
        id: "nodejs16.x",
        family: RuntimeFamily::Node,
    },
    Runtime {
        id: "nodejs18.x",
        family: RuntimeFamily::Node,
    },
    Runtime {
        id: "nodejs20.x",
        family: RuntimeFamily::Node,
    },
    Runtime {
        id: "nodejs22.x",
        family: RuntimeFamily::Node,
    },
    Runtime {
        id: "ruby3.2",
        family: RuntimeFamily::Ruby,
    },
    Runtime {
        id: "ruby3.3",
        family: RuntimeFamily::Ruby,
    },
    Runtime {
        id: "java8.al2",
        family: RuntimeFamily::Java,
    },
    Runtime {
        id: "java11",
        family: RuntimeFamily::Java,
    },
    Runtime {
        id: "java17",
        family: RuntimeFamily::Java,
    },
    Runtime {
        id: "java21",
        family: RuntimeFamily::Java,
    },
    Runtime {
        id: "dotnet6",
        family: RuntimeFamily::Dotnet,
    },
    Runtime {
        id: "dotnet8",
        family: RuntimeFamily::Dotnet,
    },
    Runtime {
        id: "go1.x",
        family: RuntimeFamily::Custom,
    },
    Runtime {
        id: "provided",
        family: RuntimeFamily::Custom,
    },
    Runtime {
        id: "provided.al2",
        family: RuntimeFamily::Custom,
    },
    Runtime {
        id: "provided.al2023",
        family: RuntimeFamily::Custom,
    },
];

pub const MAX_HANDLER_LEN: usize = 128;

impl Runtime {
    pub fn parse(id: &str) -> Result<Runtime, ValidationError> {
        KNOWN_RUNTIMES.iter().copied().find(|r| r.id == id).ok_or_else(|| {
            let known: Vec<&str> = KNOWN_RUNTIMES.iter().map(|r| r.id).collect();
            ValidationError::new(
                "runtime",
                format!("runtime '{id}' is not supported; use one of: {}", known.join(", ")),
            )
        })
    }

    /// Checks the handler string's shape for this runtime.
    pub fn validate_handler(&self, handler: &str) -> Result<(), ValidationError> {
        if handler.is_empty() || handler.len() > MAX_HANDLER_LEN {
            return Err(ValidationError::new(
                "handler",
                format!("handler '{handler}' must be 1 to {MAX_HANDLER_LEN} characters long"),
            ));
        }
        if handler.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ValidationError::new(
                "handler",
                format!("handler '{handler}' contains whitespace; use a form such as 'app.handler'"),
            ));
        }
        let needs_module = matches!(
            self.family,
            RuntimeFamily::Python | RuntimeFamily::Node | RuntimeFamily::Ruby
        );
        if needs_module && self.module_and_function(handler).is_none() {
            return Err(ValidationError::new(
                "handler",
                format!(
                    "handler '{handler}' is invalid for runtime {}; use FILE.FUNCTION, for example 'app.handler' or 'src/app.handler'",
                    self.id
                ),
            ));
        }
        Ok(())
    }

    /// Splits a handler into its module path and function name the way each
    /// language's Lambda runtime does: Python splits at the last dot, Node.js and Ruby
    /// at the first dot after the last `/`.
    fn module_and_function<'a>(&self, handler: &'a str) -> Option<(&'a str, &'a str)> {
        let (module, function) = match self.family {
            RuntimeFamily::Python => handler.rsplit_once('.')?,
            RuntimeFamily::Node | RuntimeFamily::Ruby => {
                let base_start = handler.rfind('/').map_or(0, |i| i + 1);
                let dot = handler[base_start..].find('.')? + base_start;
                (&handler[..dot], &handler[dot + 1..])
            }
            _ => return None,
        };
        if module.is_empty() || function.is_empty() || module.ends_with('/') {
            return None;
        }
        Some((module, function))
    }

    /// Lists the package files that can provide the handler; one of them must exist.
    /// An empty list means this runtime's handler names no file (Java and .NET name a
    /// class), so the package cannot be checked here.
    pub fn handler_files(&self, handler: &str) -> Vec<String> {
        match self.family {
            RuntimeFamily::Custom if self.id == "go1.x" => vec![handler.to_string()],
            RuntimeFamily::Custom => vec!["bootstrap".to_string()],
            RuntimeFamily::Java | RuntimeFamily::Dotnet => Vec::new(),
            RuntimeFamily::Python => match self.module_and_function(handler) {
                Some((module, _)) => {
                    let path = module.replace('.', "/");
                    vec![format!("{path}.py"), format!("{path}/__init__.py")]
                }
                None => Vec::new(),
            },
            RuntimeFamily::Node => match self.module_and_function(handler) {
                Some((module, _)) => ["js", "mjs", "cjs"]
                    .iter()
                    .map(|ext| format!("{module}.{ext}"))
                    .collect(),
                None => Vec::new(),
            },
            RuntimeFamily::Ruby => match self.module_and_function(handler) {
                Some((module, _)) => vec![format!("{module}.rb")],
                None => Vec::new(),
            },
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_parse_known_and_unknown() {
        assert_eq!(Runtime::parse("python3.11").unwrap().family, RuntimeFamily::Python);
        assert_eq!(Runtime::parse("provided.al2023").unwrap().family, RuntimeFamily::Custom);
        let error = Runtime::parse("python2.7").unwrap_err();
        assert_eq!(error.field, "runtime");
        assert!(error.message.contains("'python2.7'"), "{}", error.message);
        assert!(error.message.contains("nodejs20.x"), "{}", error.message);
    }

    #[test]
    fn python_handler_files() {
        let python = Runtime::parse("python3.12").unwrap();
        assert_eq!(python.handler_files("app.handler"), ["app.py", "app/__init__.py"]);
        assert_eq!(
            python.handler_files("src/pkg/app.handler"),
            ["src/pkg/app.py", "src/pkg/app/__init__.py"]
        );
        assert_eq!(
            python.handler_files("src.pkg.app.handler"),
            ["src/pkg/app.py", "src/pkg/app/__init__.py"]
        );
    }

    #[test]
    fn node_handler_files() {
        let node = Runtime::parse("nodejs20.x").unwrap();
        assert_eq!(
            node.handler_files("index.handler"),
            ["index.js", "index.mjs", "index.cjs"]
        );
        assert_eq!(
            node.handler_files("lib/v1.2/index.obj.run"),
            ["lib/v1.2/index.js", "lib/v1.2/index.mjs", "lib/v1.2/index.cjs"]
        );
    }

    #[test]
    fn custom_and_class_handler_files() {
        let provided = Runtime::parse("provided.al2023").unwrap();
        assert_eq!(provided.handler_files("anything"), ["bootstrap"]);
        let java = Runtime::parse("java21").unwrap();
        assert!(java.handler_files("example.Handler::handleRequest").is_empty());
    }

    #[test]
    fn handler_shape_rules() {
        let python = Runtime::parse("python3.12").unwrap();
        assert!(python.validate_handler("app.handler").is_ok());
        for bad in ["app", ".handler", "app.", "a b.handler", "dir/.handler", ""] {
            let error = python.validate_handler(bad).unwrap_err();
            assert_eq!(error.field, "handler", "{bad}");
        }
        let long = format!("{}.h", "a".repeat(128));
        assert!(python.validate_handler(&long).unwrap_err().message.contains("128"));

        let provided = Runtime::parse("provided").unwrap();
        assert!(provided.validate_handler("bootstrap").is_ok());
    }
}
