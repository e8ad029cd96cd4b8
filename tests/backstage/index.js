const { createBackend } = require('@backstage/backend-defaults');
const backend = createBackend();
backend.add(require('@backstage/plugin-catalog-backend'));
backend.add(require('@backstage/plugin-catalog-backend-module-scaffolder-entity-model'));
backend.start();
