"""What the blueprints' Lambda handlers share and Powertools does not provide.

Import from the modules themselves (``from messaging_runtime.batch import ...``);
this package re-exports nothing, so that a handler loads only what it uses.

- ``batch``, ``rejection``, ``readers``: parse, effect, report for batch sources
  (SQS, DynamoDB streams, Kafka) on Powertools' batch processing;
- ``publishers``: batch publishers (SQS, SNS, EventBridge, Kinesis, Firehose,
  DynamoDB) that retry only what failed;
- ``amqp``, ``stomp``, ``amazon_mq``: broker clients and Amazon MQ message decoding;
- ``contracts``: one model per event type and version, upcasters, registry schemas.

It ships in the same distribution as ``messaging_constructs`` and reaches
Lambda as a layer built from this source (``messaging_constructs.RuntimeLayer``),
which ``HandlerFunction`` attaches by default.
"""
