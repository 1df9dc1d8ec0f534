import { Code, ConnectError } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";

/**
 * Handlers for a service whose feature has not landed yet: every RPC answers UNIMPLEMENTED
 * with the method's full name and the issue that brings it.
 */
export function unimplementedService(service: DescService, feature: string): Record<string, () => never> {
  const impl: Record<string, () => never> = {};
  for (const method of service.methods) {
    impl[method.localName] = () => {
      throw new ConnectError(`${service.typeName}.${method.name} is not implemented yet (${feature})`, Code.Unimplemented);
    };
  }
  return impl;
}
