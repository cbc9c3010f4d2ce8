// TypeScript declarations of rlay.mjs: the env side of the rlay protocol v1 (spec/protocol.md).

export declare const PROTOCOL_VERSION: 1;
export declare const SDK_NAME: "rlay-js";
export declare const SDK_VERSION: string;
export declare const DEFAULT_MAX_FRAME_SIZE: number;
/** The first frame a side receives (the peer's HELLO) is limited to 64 KiB (spec section 13). */
export declare const DEFAULT_MAX_HANDSHAKE_FRAME_SIZE: number;
/** Values one body may declare, counted while decoding (spec sections 3, 13): 262144. */
export declare const DEFAULT_MAX_VALUES: number;
export declare const MAX_DEPTH: number;
export declare const MAX_NDIM: number;

/** Error codes of spec section 11. */
export declare const ErrorCode: Readonly<{
  BAD_MAGIC: 1; BAD_HEADER: 2; FRAME_TOO_LARGE: 3; TRUNCATED: 4; MALFORMED: 5; UNKNOWN_KIND: 6;
  BAD_FIELD: 7; BAD_TENSOR: 8; UNKNOWN_DTYPE: 9; TOO_DEEP: 10; UNEXPECTED_MESSAGE: 11;
  VERSION_MISMATCH: 12; ROLE_CONFLICT: 13; BAD_SPACE: 14; BAD_VALUE: 15;
  ENV_EXCEPTION: 32; INVALID_ACTION: 33; NOT_SUPPORTED: 34; RESET_NEEDED: 35; SHUTTING_DOWN: 36;
  INTERNAL: 37;
}>;
export type ErrorCodeName = keyof typeof ErrorCode;
export declare function errorName(code: number): string;

/** Message kinds of spec section 6. */
export declare const Kind: Readonly<{
  HELLO: 1; ENV_INFO: 2; RESET: 16; STEP: 17; RENDER: 18; CLOSE: 19; CALL: 20;
  RESET_RESULT: 32; STEP_RESULT: 33; RENDER_RESULT: 34; CLOSE_RESULT: 35; CALL_RESULT: 36; ERROR: 48;
}>;

/** Base class of every rlay error; `code` is a section-11 code, or null for a local condition. */
export declare class RlayError extends Error {
  constructor(code: number | null, message: string);
  readonly code: number | null;
  readonly detail: string;
  readonly codeName: ErrorCodeName | null;
}
/** An ERROR the peer sent. */
export declare class RemoteError extends RlayError {
  readonly fatal: boolean;
  readonly remoteType: string | null;
  readonly traceback: string | null;
}
/** The connection ended while the session was not over. */
export declare class PeerClosedError extends RlayError {}
/** Throw from env code to answer with a chosen code (NOT_SUPPORTED, INVALID_ACTION, ...). */
export declare class EnvError extends Error {
  constructor(code: number, message: string, options?: { fatal?: boolean; remoteType?: string | null });
  readonly code: number;
  readonly fatal: boolean;
  readonly remoteType: string | null;
}

export type DType =
  | "bool" | "int8" | "int16" | "int32" | "int64" | "uint8" | "uint16" | "uint32" | "uint64"
  | "float16" | "float32" | "float64";
export type TypedArray =
  | Int8Array | Int16Array | Int32Array | BigInt64Array | Uint8Array | Uint8ClampedArray
  | Uint16Array | Uint32Array | BigUint64Array | Float32Array | Float64Array;

/** An n-dimensional array: `data` holds prod(shape) elements in C order (float16 as Uint16Array bits). */
export declare class Tensor {
  constructor(dtype: DType, shape: number[], data: TypedArray);
  dtype: DType;
  shape: number[];
  data: TypedArray;
  readonly size: number;
  readonly bytes: Uint8Array;
}
export declare function tensor(dtype: DType, shape: number[] | null, data: TypedArray | ArrayLike<unknown> | unknown[]): Tensor;

/** A number that travels as a float even when integral. */
export declare class Float {
  constructor(value: number);
  value: number;
  valueOf(): number;
}
export declare function float(x: number): Float;

/** A free-form value (section 3) as env code writes it. */
export type Value =
  | null | boolean | number | bigint | string | Float | Uint8Array | Tensor | TypedArray
  | Value[] | Map<string, Value> | { [key: string]: Value };

export declare function encodeFrame(kind: number, fields: Map<string, unknown> | Record<string, unknown>): Uint8Array;
export declare function encodeValue(v: Value): { body: Uint8Array; data: Uint8Array };
/** Decodes a body into an exact tree (Maps, Float, BigInt past 2^53, Tensor views). */
export declare function decodeValue(body: Uint8Array, data?: Uint8Array, maxValues?: number): unknown;
/** An exact tree -> plain objects and numbers. */
export declare function toPlain(v: unknown): unknown;

/** Cuts a byte stream into frames [kind, data, body]. */
export declare class FrameReader {
  constructor(maxFrameSize?: number, handshakeMax?: number | null);
  readonly partial: boolean;
  frames: [number, Uint8Array, Uint8Array][];
  feed(chunk: Uint8Array): void;
  feedEof(): void;
  feedMessage(message: Uint8Array): void;
}
export declare function checkFields(kind: number, body: unknown): Map<string, unknown>;
export declare function canonicalFields(kind: number, fields: Map<string, unknown>): Map<string, unknown>;

export type State = "hello" | "describe" | "idle" | "reset" | "step" | "render" | "call" | "close" | "closed";
export declare const STATES: State[];
export interface Event { kind: number; name: string; fields: Map<string, unknown> }
/** The protocol core without I/O, for either role. */
export declare class Connection {
  constructor(role: "env" | "agent", options?: { maxFrameSize?: number; maxHandshakeFrameSize?: number; maxValues?: number; state?: State; numEnvs?: number });
  readonly role: "env" | "agent";
  state: State;
  receiveData(chunk: Uint8Array): void;
  receiveMessage(message: Uint8Array): void;
  receiveEof(): void;
  nextEvent(): Event | null;
  eofProblem(): PeerClosedError | null;
  send(kind: number, fields: Map<string, unknown>): Uint8Array;
}
export declare function helloFields(role: "env" | "agent"): Map<string, unknown>;
export declare function errorFields(code: number, message: string, fatal: boolean, remoteType?: string | null, traceback?: string | null): Map<string, unknown>;

export type SpaceKind = "box" | "discrete" | "multi_discrete" | "multi_binary" | "text" | "dict" | "tuple" | "sequence" | "graph" | "one_of";
/** A space of section 9. */
export declare class Space {
  readonly kind: SpaceKind;
  [field: string]: unknown;
  toWire(): Map<string, unknown>;
}
export declare function parseSpace(descriptor: unknown, where?: string): Space;
type Bound = number | bigint | ArrayLike<number | bigint> | number[] | Tensor;
export declare function box(options: { low: Bound; high: Bound; shape?: number[]; dtype?: DType }): Space;
export declare function discrete(n: number, options?: { start?: number; dtype?: DType }): Space;
export declare function multiDiscrete(nvec: number[] | Tensor, options?: { start?: number[] | Tensor; dtype?: DType }): Space;
export declare function multiBinary(n: number | number[]): Space;
export declare function text(maxLength: number, options?: { minLength?: number; charset?: string }): Space;
export declare function dict(spaces: Record<string, Space> | Map<string, Space> | [string, Space][]): Space;
export declare function tuple(spaces: Space[]): Space;
export declare function sequence(space: Space, options?: { stack?: boolean }): Space;
export declare function graph(nodeSpace: Space, edgeSpace?: Space | null): Space;
export declare function oneOf(spaces: Space[]): Space;
export declare function batchSpace(space: Space, n: number): Space;
/** A received value checked for structure (BAD_VALUE) -> what env code sees. */
export declare function fromWire(space: Space, value: unknown, where?: string): any;
/** A value env code gives -> its wire form (throws TypeError when it does not fit). */
export declare function toWire(space: Space, value: unknown, where?: string): unknown;
/** Why a value is outside the space's bounds, or null. */
export declare function outside(space: Space, value: unknown): string | null;
export declare function subValue(space: Space, batched: unknown, i: number): any;

export type Address = { scheme: "tcp"; host: string; port: number } | { scheme: "unix"; path: string } | { scheme: "ws"; url: string };
export declare function parseAddress(address: string): Address;

export type CommandKind = "reset" | "step" | "render" | "call" | "close";
/** A command from the agent side; answer it once. */
export declare class Command {
  readonly kind: CommandKind;
  answered: boolean;
  /** reset: null, a number (a BigInt past 2^53), or (batches) an array. */
  seed?: number | bigint | (number | bigint | null)[] | null;
  options?: Record<string, any> | null;
  /** step: the action (the batched one when numEnvs > 1). */
  action?: any;
  /** step, numEnvs > 1: each sub-env's action, and whether it autoresets now (next_step). */
  actions?: any[];
  autoreset?: boolean[];
  /** reset, numEnvs > 1: each sub-env's seed, and which sub-envs to reset. */
  seeds?: (number | bigint | null)[];
  resetMask?: boolean[];
  name?: string;
  args?: any[];
  kwargs?: Record<string, any>;
  reply(...values: any[]): void;
  fail(error: unknown): void;
}

export interface EnvSideOptions {
  observationSpace: Space;
  actionSpace: Space;
  metadata?: Record<string, Value> | Map<string, Value>;
  renderMode?: string | null;
  name?: string | null;
  numEnvs?: number;
  maxFrameSize?: number;
}
type MaybePromise<T> = T | Promise<T>;
export interface Handlers {
  reset(seed: Command["seed"], options: Record<string, any> | null, cmd: Command): MaybePromise<[unknown, Record<string, Value>?] | { obs: unknown; info?: Record<string, Value> }>;
  step(action: any, cmd: Command): MaybePromise<[unknown, number | ArrayLike<number>, boolean | ArrayLike<boolean>, boolean | ArrayLike<boolean>, Record<string, Value>?] | { obs: unknown; reward: number | ArrayLike<number>; terminated: boolean | ArrayLike<boolean>; truncated: boolean | ArrayLike<boolean>; info?: Record<string, Value> }>;
  render?(cmd: Command): MaybePromise<Value>;
  calls?: Record<string, (...args: any[]) => MaybePromise<Value | undefined>>;
  close?(): MaybePromise<void>;
}
export interface WebSocketLike {
  readonly readyState: number;
  readonly url: string;
  binaryType: string;
  send(data: Uint8Array): void;
  close(code?: number): void;
  addEventListener(type: string, listener: (ev: any) => void, options?: unknown): void;
}

/** One session of the env side. */
export declare class EnvSide {
  constructor(options: EnvSideOptions);
  readonly observationSpace: Space;
  readonly actionSpace: Space;
  readonly numEnvs: number;
  address: string | null;
  /** true once the session is over; `error` says why (null: orderly). */
  readonly finished: boolean;
  readonly error: RlayError | null;
  /** Resolves when the session ends, with the error that ended it or null. */
  readonly done: Promise<RlayError | null>;
  /** Waits for rlay.ClientEnv: tcp://HOST:PORT, unix:///path or ws://HOST:PORT/path (Node). */
  listen(address: string): Promise<string>;
  connect(address: string, options?: { WebSocket?: new (url: string) => WebSocketLike }): Promise<string>;
  attach(transport: unknown): void;
  /** Loop style: the next command or null; never blocks. */
  poll(): Command | null;
  next(): Promise<Command | null>;
  /** Resolves once a command waits (or the session is over), taking nothing from the queue. */
  ready(): Promise<void>;
  replyReset(obs: unknown, info?: Record<string, Value> | Map<string, Value>): void;
  replyStep(obs: unknown, reward: number | ArrayLike<number>, terminated: boolean | ArrayLike<boolean>, truncated: boolean | ArrayLike<boolean>, info?: Record<string, Value> | Map<string, Value>): void;
  replyRender(frame: Value): void;
  replyCall(value: Value | undefined): void;
  replyClose(): void;
  replyException(error: unknown): void;
  /** Callback style: runs the session; resolves with null after an orderly end. */
  serve(handlers: Handlers): Promise<null>;
  shutdown(message?: string): void;
}

export declare function launchTarget(argv?: string[], environ?: Record<string, string | undefined>): { mode: "listen" | "connect"; address: string };
/** Listens or dials per --listen/--connect or RLAY_MODE/RLAY_ADDRESS; a listener prints RLAY_LISTENING. */
export declare function open(env: EnvSide, argv?: string[], environ?: Record<string, string | undefined>): Promise<string>;
