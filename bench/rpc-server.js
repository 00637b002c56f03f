// One server of the RPC benchmark, in a process of its own: `node bench/rpc-server.js <kind>` with
// kind pylon (a gateway on TCP with an RpcServer: json and msgpack clients both), grpc
// (@grpc/grpc-js, unary) or http (node:http, keep-alive, JSON bodies). Each echoes its request.
// Sends { ready: port } to its parent over IPC and exits when the parent goes away.
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { createGateway, createLogger } from '../dist/index.js';
import { RpcServer } from '../dist/rpc/index.js';

const PROTO = fileURLToPath(new URL('./rpc-echo.proto', import.meta.url));
const kind = process.argv[2];

async function pylon() {
  const gateway = createGateway({
    tcp: { port: 0, host: '127.0.0.1' },
    logger: createLogger('silent'),
    rateLimit: false, // service traffic: a few connections carry every call
    maxPendingRequests: 1024,
  });
  new RpcServer(gateway).method('echo', (data) => data);
  const addr = await gateway.listen();
  return addr.tcp.port;
}

function grpcServer() {
  const def = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, defaults: false });
  const pkg = grpc.loadPackageDefinition(def);
  const server = new grpc.Server();
  server.addService(pkg.bench.rpc.EchoService.service, {
    Echo: (call, callback) => callback(null, call.request),
  });
  return new Promise((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(err) : resolve(port),
    );
  });
}

function httpServer() {
  const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
      res.end(body);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

const start = { pylon, grpc: grpcServer, http: httpServer }[kind];
if (!start) throw new Error(`unknown server kind "${kind}"`);
process.on('disconnect', () => process.exit(0));
const port = await start();
process.send({ ready: port });
