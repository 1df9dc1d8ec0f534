import { create, fromBinary, toBinary, type DescFile, type DescService, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import { file_google_rpc_error_details } from "../../gen/google/rpc/error_details_pb.js";
import { file_google_rpc_status } from "../../gen/google/rpc/status_pb.js";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** gRPC status codes used inside reflection's ErrorResponse (the protocol carries them as data). */
const NOT_FOUND = 5;
const INVALID_ARGUMENT = 3;

type Symbolic = DescFile["messages"][number] | DescFile["enums"][number] | DescFile["services"][number] | DescFile["extensions"][number];

/**
 * What server reflection answers from: the services served and every file they need, down to
 * `google/protobuf/*`, taken from the generated descriptors (no .proto files at run time).
 */
export class ReflectionIndex {
  private readonly files = new Map<string, DescFile>();
  private readonly symbols = new Map<string, Symbolic>();
  private readonly encodedFiles = new Map<string, Uint8Array>();
  readonly serviceNames: readonly string[];

  constructor(services: readonly DescService[], extraFiles: readonly DescFile[] = []) {
    this.serviceNames = [...new Set(services.map((s) => s.typeName))].sort();
    for (const service of services) this.addFile(service.file);
    for (const file of extraFiles) this.addFile(file);
  }

  private addFile(file: DescFile): void {
    if (this.files.has(file.proto.name)) return;
    this.files.set(file.proto.name, file);
    const addMessages = (messages: DescFile["messages"]) => {
      for (const m of messages) {
        this.symbols.set(m.typeName, m);
        for (const e of m.nestedEnums) this.symbols.set(e.typeName, e);
        for (const x of m.nestedExtensions) this.symbols.set(x.typeName, x);
        addMessages(m.nestedMessages);
      }
    };
    addMessages(file.messages);
    for (const e of file.enums) this.symbols.set(e.typeName, e);
    for (const s of file.services) this.symbols.set(s.typeName, s);
    for (const x of file.extensions) this.symbols.set(x.typeName, x);
    for (const dep of file.dependencies) this.addFile(dep);
  }

  fileByName(name: string): DescFile | undefined {
    return this.files.get(name);
  }

  /**
   * The file declaring a fully-qualified symbol: a message, enum, service or extension, or a
   * member of one (a method, field or enum value).
   */
  fileContainingSymbol(symbol: string): DescFile | undefined {
    const name = symbol.startsWith(".") ? symbol.slice(1) : symbol;
    const exact = this.symbols.get(name);
    if (exact) return exact.file;
    const dot = name.lastIndexOf(".");
    if (dot <= 0) return undefined;
    const parent = this.symbols.get(name.slice(0, dot));
    const member = name.slice(dot + 1);
    if (!parent) return undefined;
    const found =
      (parent.kind === "service" && parent.methods.some((m) => m.name === member)) ||
      (parent.kind === "message" && (parent.fields.some((f) => f.name === member) || parent.oneofs.some((o) => o.name === member))) ||
      (parent.kind === "enum" && parent.values.some((v) => v.name === member));
    return found ? parent.file : undefined;
  }

  /** Extensions of `typeName` (undefined when the message is unknown). */
  extensionsOf(typeName: string): Array<Extract<Symbolic, { kind: "extension" }>> | undefined {
    const target = this.symbols.get(typeName.startsWith(".") ? typeName.slice(1) : typeName);
    if (target?.kind !== "message") return undefined;
    const out: Array<Extract<Symbolic, { kind: "extension" }>> = [];
    for (const s of this.symbols.values()) if (s.kind === "extension" && s.extendee.typeName === target.typeName) out.push(s);
    return out;
  }

  /** The file and its transitive dependencies, serialized; files already `sent` on this stream are left out (except the file asked for). */
  encodeWithDependencies(file: DescFile, sent: Set<string>): Uint8Array[] {
    const out: Uint8Array[] = [];
    const queue: DescFile[] = [file];
    const seen = new Set<string>();
    while (queue.length > 0) {
      const next = queue.shift()!;
      const name = next.proto.name;
      if (seen.has(name)) continue;
      seen.add(name);
      if (out.length === 0 || !sent.has(name)) {
        out.push(this.encode(next));
        sent.add(name);
      }
      queue.push(...next.dependencies);
    }
    return out;
  }

  private encode(file: DescFile): Uint8Array {
    let bytes = this.encodedFiles.get(file.proto.name);
    if (!bytes) {
      bytes = toBinary(FileDescriptorProtoSchema, file.proto);
      this.encodedFiles.set(file.proto.name, bytes);
    }
    return bytes;
  }
}

type Response = MessageInitShape<typeof v1.ServerReflectionResponseSchema>;

/** Answers one reflection request (v1 shape). `sent` tracks the files this stream has already received. */
export function answerReflection(index: ReflectionIndex, req: v1.ServerReflectionRequest, sent: Set<string>): Response {
  const base = { validHost: req.host, originalRequest: req };
  const error = (code: number, message: string): Response => ({
    ...base,
    messageResponse: { case: "errorResponse", value: { errorCode: code, errorMessage: message } },
  });
  const files = (file: DescFile | undefined, what: string): Response =>
    file
      ? { ...base, messageResponse: { case: "fileDescriptorResponse", value: { fileDescriptorProto: index.encodeWithDependencies(file, sent) } } }
      : error(NOT_FOUND, `${what} not found`);
  const r = req.messageRequest;
  switch (r.case) {
    case "listServices":
      return { ...base, messageResponse: { case: "listServicesResponse", value: { service: index.serviceNames.map((name) => ({ name })) } } };
    case "fileByFilename":
      return files(index.fileByName(r.value), `file '${r.value}'`);
    case "fileContainingSymbol":
      return files(index.fileContainingSymbol(r.value), `symbol '${r.value}'`);
    case "fileContainingExtension": {
      const ext = index.extensionsOf(r.value.containingType)?.find((x) => x.number === r.value.extensionNumber);
      return files(ext?.file, `extension ${r.value.extensionNumber} of '${r.value.containingType}'`);
    }
    case "allExtensionNumbersOfType": {
      const exts = index.extensionsOf(r.value);
      if (!exts) return error(NOT_FOUND, `message type '${r.value}' not found`);
      return {
        ...base,
        messageResponse: { case: "allExtensionNumbersResponse", value: { baseTypeName: r.value, extensionNumber: exts.map((x) => x.number) } },
      };
    }
    default:
      return error(
        INVALID_ARGUMENT,
        "empty reflection request: set one of list_services, file_by_filename, file_containing_symbol, file_containing_extension, all_extension_numbers_of_type",
      );
  }
}

function v1Impl(index: ReflectionIndex): ServiceImpl<typeof v1.ServerReflection> {
  return {
    async *serverReflectionInfo(requests) {
      const sent = new Set<string>();
      for await (const req of requests) yield answerReflection(index, req, sent);
    },
  };
}

// v1alpha is wire-identical to v1: convert through the binary form and answer once.
function v1alphaImpl(index: ReflectionIndex): ServiceImpl<typeof v1alpha.ServerReflection> {
  return {
    async *serverReflectionInfo(requests) {
      const sent = new Set<string>();
      for await (const req of requests) {
        const asV1 = fromBinary(v1.ServerReflectionRequestSchema, toBinary(v1alpha.ServerReflectionRequestSchema, req));
        const res = create(v1.ServerReflectionResponseSchema, answerReflection(index, asV1, sent));
        yield fromBinary(v1alpha.ServerReflectionResponseSchema, toBinary(v1.ServerReflectionResponseSchema, res));
      }
    },
  };
}

/**
 * Adds `grpc.reflection.v1.ServerReflection` and `grpc.reflection.v1alpha.ServerReflection` to
 * the router, describing every service registered on it so far and reflection itself. Call it
 * after the other services. (The bidi stream needs HTTP/2, as grpcurl and `buf curl` use.)
 */
export function registerReflection(router: ConnectRouter): void {
  const services = [...new Set(router.handlers.map((h) => h.service)), v1.ServerReflection, v1alpha.ServerReflection];
  // Error details travel as Any: their types resolve too (grpcurl decodes them this way).
  const index = new ReflectionIndex(services, [file_google_rpc_error_details, file_google_rpc_status]);
  router.service(v1.ServerReflection, v1Impl(index));
  router.service(v1alpha.ServerReflection, v1alphaImpl(index));
}
