// Uploads a file with tus-js-client, the reference tus client, as a SaaS
// front end's Node tooling would. Prints one JSON line: {"url", "done",
// "error"}. Arguments (as --name value):
//   --endpoint  https://.../api/uploads?collection=&field=   (to create)
//   --url       an upload URL to resume instead of creating
//   --file      the file to send; --token the API token
//   --chunk     bytes per PATCH (default: the whole rest in one)
//   --stop-after  abort once this many bytes were acknowledged (prints the URL)
// TLS: the server's certificate comes from NODE_EXTRA_CA_CERTS.
import fs from 'node:fs';
import * as tus from 'tus-js-client';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].slice(2)] = process.argv[i + 1];
const data = fs.readFileSync(args.file);
const stopAfter = args['stop-after'] ? Number(args['stop-after']) : null;
const options = {
  headers: { Authorization: 'Bearer ' + args.token },
  metadata: { filename: 'upload.bin', filetype: 'application/octet-stream' },
  uploadSize: data.length,
  retryDelays: null,
  removeFingerprintOnSuccess: true,
  onError: (error) => finish({ url: upload.url, done: false, error: String(error) }),
  onSuccess: () => finish({ url: upload.url, done: true }),
  onChunkComplete: (_size, acknowledged) => {
    if (stopAfter !== null && acknowledged >= stopAfter) {
      upload.abort().then(() => finish({ url: upload.url, done: false, acknowledged }));
    }
  },
};
if (args.chunk) options.chunkSize = Number(args.chunk);
if (args.url) options.uploadUrl = args.url; else options.endpoint = args.endpoint;
let finished = false;
function finish(result) {
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify(result) + '\n');
}
const upload = new tus.Upload(data, options);
upload.start();
