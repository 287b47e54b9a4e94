// Parse and validate an AsyncAPI document with @asyncapi/parser (path in $ASYNCAPI_PARSER);
// print every diagnostic, exit 1 on any error or warning.
const fs = require("node:fs");
const { Parser } = require(process.env.ASYNCAPI_PARSER);

async function main(file) {
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(fs.readFileSync(file, "utf8"), {
    source: file,
  });
  // Spectral severities: 0 error, 1 warning, 2 information, 3 hint.
  const names = ["error", "warning", "info", "hint"];
  for (const d of diagnostics) {
    const where = d.path.join("/");
    console.log(`${names[d.severity]} ${d.code} at ${where || "/"}: ${d.message}`);
  }
  const bad = diagnostics.filter((d) => d.severity <= 1);
  if (document === undefined || bad.length > 0) {
    console.log(`${file}: invalid (${bad.length} error(s) or warning(s))`);
    process.exit(1);
  }
  const channels = document.channels().length;
  const operations = document.operations().length;
  const messages = document.components().messages().length;
  console.log(
    `${file}: valid AsyncAPI ${document.version()}: ${channels} channels, ` +
      `${operations} operations, ${messages} messages`,
  );
}

main(process.argv[2]).catch((err) => {
  console.error(err);
  process.exit(1);
});
