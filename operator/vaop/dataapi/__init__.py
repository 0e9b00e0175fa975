"""The account's protected data, served as the aggregated API ``data.videoanalyzer.io/v1alpha1``.

AccessPolicy and Video objects are sealed with keys derived from their account's key and kept
through the main apiserver in internal SealedObjects; the operator serves them to kubectl, GitOps
tools and RBAC like built-in kinds. Modules, one concern each:

- ``kinds``: the two kinds: their specs (pydantic, the one source of their schema), columns, names;
- ``auth``: who is asking (front-proxy client certificate, X-Remote-* headers) and may they
  (SubjectAccessReview);
- ``storage``: SealedObjects in the main apiserver (no crypto, no plaintext);
- ``keys``: account keys, unwrapped through the account's own chain and held briefly;
- ``codec``: an API object to a SealedObject and back (the only caller of crypto.objects);
- ``patches`` and ``fields``: merge, JSON and server-side-apply patches, managed fields;
- ``verbs``: get, list, watch, create, update, patch, delete, as the apiserver does them;
- ``documents``: discovery, OpenAPI v3, Table, Status;
- ``server``: HTTP routing and content negotiation.
"""
